"""Stub of brax: lets PureJaxRL's wrappers.py import; brax environments are NOT available here."""
