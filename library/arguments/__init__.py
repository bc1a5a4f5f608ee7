"""kohya's command-line options, one file per group (kohya-cli.md §2).

Each module has `add_arguments(parser)`; `library.args.build_parser` adds them all. Options that have no effect
for Anima are still accepted, because users' kohya TOMLs contain them; their help says so.
"""
