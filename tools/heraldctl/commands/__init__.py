"""heraldctl's commands, a module per group; tools/heraldctl/main.py assembles them."""
