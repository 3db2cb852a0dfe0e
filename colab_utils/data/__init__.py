"""Data: image folders, domain folders, zips from Drive, and the synthetic faces and video we generate."""
