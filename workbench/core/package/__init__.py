"""Packages built as data before anything is sent: a wheel for PyPI now (OCI images and Hugging Face folders
later). Building to a folder gives exactly what a publisher would upload."""
