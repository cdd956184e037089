"""heraldctl's commands, a module per group; herald/tools/heraldctl/main.py assembles them."""
