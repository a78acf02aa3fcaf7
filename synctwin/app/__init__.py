"""The entry points: the command line, the HTTP service, reports. Thin: each calls one use case."""
