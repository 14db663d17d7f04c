"""The dashboard's logic: the query layer (queries), live push (live), PNG plots (plots),
operator-control authorisation (controls) and the API's response models (models).

The FastAPI app that serves them is visualization/visualization.py.
"""
