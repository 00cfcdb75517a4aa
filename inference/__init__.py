"""Sliding-window inference to Cloud-Optimized GeoTIFFs, area statistics and publishing to EE."""
