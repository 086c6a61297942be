"""The catalog service: datasets published as metadata, and governed access to them under permits."""
