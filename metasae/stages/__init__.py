"""One module per `metasae` command, each holding the one function that command calls.

Stages read files and write files; they do not import each other (shared code lives in the library).
"""
