"""``runner studio``: the local web UI over one workspace (host only).

``server`` starts it (uvicorn on 127.0.0.1 by default), ``app`` holds its routes,
``pages`` renders HTML, ``live`` streams Server-Sent Events, ``security`` guards every
request. Static files (uPlot, MIT licence kept beside it) are vendored in ``static/``:
no CDN, no download, no build step.
"""
