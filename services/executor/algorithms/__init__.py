"""Built-in algorithm components: one package per component, each with its ``component.json`` beside its code."""
