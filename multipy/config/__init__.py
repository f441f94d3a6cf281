"""The multus configuration: schema validation, the model, and network files under confDir."""
