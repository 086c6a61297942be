"""The registry service: node contracts, certificates, announcements and health."""
