"""zhisuan (智算): an open-source AI compute cloud platform."""

__version__ = "0.1.0"
