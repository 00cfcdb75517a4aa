"""The map COGs: their metadata, how they are written, quick-looks.

``maps``: what every map COG records (``OutputInfo``, tags, ``PROB_SCALE``, ``NODATA``,
palettes), GDAL's COG driver writing a finished raster or a prediction's strips, the read-back
check, quick-looks; ``stream``: the streaming encoder that writes a prediction's two maps while
their rows are produced (its plain twin is GDAL's COG driver, which gives the same pixels at
every level; ``levels``: one level's tiles cut panel by panel); ``layout``: the bytes of a COG
arranged from tiles already compressed.

May import: ``gee_export`` only; never ``training`` or the rest of ``inference`` (they import it).
"""
