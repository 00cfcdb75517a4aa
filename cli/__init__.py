"""The console scripts, one module per command (as rasterio's ``rio/``).

Each module holds a command's parser (examples, defaults, the options' checks) and its
``main``, and hands a checked value to the library below; the work itself lives there.
May import every library package (core, contract, gee_export, engine, training, inference);
nothing in the library imports ``cli``, and a command module never imports another.
"""
