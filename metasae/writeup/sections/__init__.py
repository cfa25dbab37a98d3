"""One module per section of the report (and its appendix), each a function of the loaded study."""
