"""The VI language: code-panel parser, state diagrams and code generation."""
