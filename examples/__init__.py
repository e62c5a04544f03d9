"""The example feature repositories, shipped as package data (``freshet.examples``)."""
