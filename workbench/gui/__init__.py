"""The desktop front end. Everything Qt lives here; the core never imports it."""
