"""The floor: the least a Python HTTP model server can do per request.

FastAPI under uvicorn (one worker, the same uvicorn as ``loopml serve``): parse
``{"inputs": [[...]]}`` with orjson into a float64 NumPy array, call the model's ``predict``
inline, answer ``{"predictions": [...]}``. No validation, no logging, no metrics. The model
is the joblib file named by ``FLOOR_MODEL``, loaded once at import.

``FLOOR_MODEL=forest.joblib uvicorn _floor_app:app --app-dir bench/serving``
"""

from __future__ import annotations

import os

import joblib
import numpy as np
import orjson
from fastapi import FastAPI, Request, Response

model = joblib.load(os.environ["FLOOR_MODEL"])
app = FastAPI()


@app.post("/invocations")
async def invocations(request: Request) -> Response:
    x = np.asarray(orjson.loads(await request.body())["inputs"], dtype=np.float64)
    return Response(orjson.dumps({"predictions": model.predict(x).tolist()}), media_type="application/json")
