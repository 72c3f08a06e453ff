"""Posts domain events to Herald from Python with the standard library only (no SDK needed).

    HERALD_URL=http://127.0.0.1:6001 PUSHER_APP_ID=... PUSHER_APP_KEY=... PUSHER_APP_SECRET=... \
        python3 send_domain_events.py

The request is signed exactly as the Pusher server SDKs sign the HTTP API (auth_version 1.0).
"""

import hashlib
import hmac
import json
import os
import time
import urllib.parse
import urllib.request

HERALD = os.environ.get("HERALD_URL", "http://127.0.0.1:6001")
APP_ID = os.environ.get("PUSHER_APP_ID", "1000001")
KEY = os.environ.get("PUSHER_APP_KEY", "app-key")
SECRET = os.environ.get("PUSHER_APP_SECRET", "app-secret")


def send_domain_events(events):
    """Returns (status, body): 202 means every event is stored; 4xx bodies name the problem."""
    body = json.dumps({"events": events}).encode()
    path = f"/apps/{APP_ID}/domain-events"
    params = {
        "auth_key": KEY,
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
        "body_md5": hashlib.md5(body).hexdigest(),
    }
    # Sign "POST\n<path>\n<params sorted by key, as k=v joined by &, not URL-escaped>".
    to_sign = "\n".join(["POST", path, "&".join(f"{k}={params[k]}" for k in sorted(params))])
    params["auth_signature"] = hmac.new(SECRET.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{HERALD}{path}?{urllib.parse.urlencode(params)}",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


if __name__ == "__main__":
    status, reply = send_domain_events([{
        "id": f"alert-{int(time.time() * 1000)}",
        "type": "security.alert",
        "data": {"alert_type": "login", "message": "New sign-in from Berlin", "severity": "medium"},
    }])
    print(status, json.dumps(reply))
    raise SystemExit(0 if status == 202 else 1)
