"""The web console's files (HTML, JavaScript, CSS and the vendored uPlot): data, not code, served by `web.static`.

A package of its own so that setuptools ships its files (``package-data``) and `importlib.resources` finds them
in a wheel, a zip or a source tree alike.
"""
