"""Drive an Open Inference Protocol V2 server with the real clients: tritonclient[http]
and kserve's InferenceRESTClient. Prints what each client got, as JSON, on stdout.

Runs in the clients venv (tests/support/clients_venv.py), never in the project venv:
it imports nothing of this repository. Input on stdin, one JSON object::

    {"url": "http://127.0.0.1:8080", "model": "iris", "headers": {}, "ca": null,
     "cases": {"one": [[5.1, 3.5, 1.4, 0.2]], "many": [[...], ...]}}

Output: ``{"versions": {...}, "tritonclient": REPORT, "kserve": REPORT}`` where a REPORT
holds ``live``, ``ready``, ``model_ready``, ``metadata`` and, per case, the labels,
probabilities and model version the client read. A client that raises makes this
script exit 1 with the traceback on stderr: the calling test shows it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import numpy as np

Rows = list[list[float]]


def _labels(array: Any) -> list[str]:
    # BYTES tensors come back as bytes from binary buffers and as str from JSON data
    return [x.decode() if isinstance(x, bytes) else str(x) for x in array.reshape(-1).tolist()]


def triton(url: str, model: str, headers: dict[str, str], ca: str | None, cases: dict[str, Rows]):
    import tritonclient.http as th

    parts = urlsplit(url)
    tls = parts.scheme == "https"
    client = th.InferenceServerClient(
        url=parts.netloc, ssl=tls, ssl_options={"ca_certs": ca} if tls and ca else None
    )
    try:
        report: dict[str, Any] = {
            "live": client.is_server_live(headers=headers),
            "ready": client.is_server_ready(headers=headers),
            "model_ready": client.is_model_ready(model, headers=headers),
            "metadata": client.get_model_metadata(model, headers=headers),
            "infer": {},
        }
        for name, rows in cases.items():
            x = np.asarray(rows, dtype=np.float64)
            tensor = th.InferInput("input", list(x.shape), "FP64")
            # the predictor refuses binary *input* (400); binary *outputs* stay the
            # client's default, which is what a user of tritonclient sends
            tensor.set_data_from_numpy(x, binary_data=False)
            outputs = [th.InferRequestedOutput("predictions"),
                       th.InferRequestedOutput("probabilities")]  # fmt: skip
            result = client.infer(
                model, [tensor], outputs=outputs, request_id=f"triton-{name}", headers=headers
            )
            answer = result.get_response()
            report["infer"][name] = {
                "id": answer.get("id"),
                "model_version": answer.get("model_version"),
                "labels": _labels(result.as_numpy("predictions")),
                "probabilities": result.as_numpy("probabilities").tolist(),
            }
        return report
    finally:
        client.close()


async def kserve_client(
    url: str, model: str, headers: dict[str, str], ca: str | None, cases: dict[str, Rows]
) -> dict[str, Any]:
    import httpx
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.rest.v2_datamodels import ModelMetadataResponse

    verify: str | bool = ca if ca else True
    client = InferenceRESTClient(RESTConfig(protocol="v2", verify=verify, retries=0))
    try:
        report: dict[str, Any] = {
            "live": await client.is_server_live(url, headers=headers),
            "ready": await client.is_server_ready(url, headers=headers),
            "model_ready": await client.is_model_ready(url, model, headers=headers),
            "infer": {},
        }
        # kserve's REST client has no metadata call: kserve's own response model reads it
        async with httpx.AsyncClient(verify=verify) as http:
            found = await http.get(f"{url}/v2/models/{model}", headers=headers)
            found.raise_for_status()
        report["metadata"] = ModelMetadataResponse.model_validate(found.json()).model_dump()
        for name, rows in cases.items():
            x = np.asarray(rows, dtype=np.float64)
            tensor = InferInput("input", list(x.shape), "FP64")
            tensor.set_data_from_numpy(x, binary_data=False)
            request = InferRequest(model, [tensor], request_id=f"kserve-{name}")
            seen: dict[str, str] = {}
            response = await client.infer(
                url, request, model_name=model, headers=dict(headers), response_headers=seen
            )
            by_name = {o.name: o for o in response.outputs}
            report["infer"][name] = {
                "id": response.id,
                "model_version": {k.lower(): v for k, v in seen.items()}.get("x-model-version"),
                "labels": _labels(by_name["predictions"].as_numpy()),
                "probabilities": by_name["probabilities"].as_numpy().tolist(),
            }
        return report
    finally:
        await client.close()


def main() -> int:
    job = json.load(sys.stdin)
    args = (job["url"].rstrip("/"), job["model"], job.get("headers") or {}, job.get("ca"))
    cases: dict[str, Rows] = job["cases"]
    out = {
        "versions": {d: metadata.version(d) for d in ("tritonclient", "kserve")},
        "tritonclient": triton(*args, cases),
        "kserve": asyncio.run(kserve_client(*args, cases)),
    }
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
