"""The dashboard: the FastAPI app (app, with its page in templates/ and static/), the query
layer (queries), live push (live), PNG plots (plots), operator-control authorisation (controls),
the API's response models (models) and HTTP plumbing (web).

The visualization service (trading/services/visualization.py) serves the app.
"""
