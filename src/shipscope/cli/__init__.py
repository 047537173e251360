"""The command line: parse flags, call the core, render."""
