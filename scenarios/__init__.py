"""Built-in scenarios and data, shipped as package data (scenarios/builtin/)."""
