"""herald's default addresses: each binary's own defaults (herald/libs/config.py), the dev mesh's (`make up`) and
heraldctl's endpoints read them here, so the three never disagree."""

GRPC = {"intake": 50051, "router": 50052, "adapters": 50053, "feedback": 50054}
# herald-adapters' HTTP endpoint for providers' delivery receipts (and tracked links).
RECEIPTS = 50063
# herald-gateway: every public RPC over HTTP (Connect, gRPC-Web) and the web console.
GATEWAY = 8080
# Each binary's Prometheus endpoint (GET /metrics, /livez, /readyz).
METRICS = {"intake": 9461, "router": 9462, "adapters": 9463, "feedback": 9464, "gateway": 9465}


def grpc_addr(service: str) -> str:
    return f"127.0.0.1:{GRPC[service]}"
