"""CPU cost of validating one SAML response at our ACS (federation.saml.ServiceProvider.validate).

Signatures are verified in-process (signxml); pysaml2 alone would run xmlsec1 per signature,
so the cost counted is this process's CPU plus its children's, and the children's share is
printed apart (it must stay 0). Uses the tests' pysaml2 IdP to make real signed responses
(Response and Assertion both signed, RSA-SHA256).
Run: `.venv/bin/python bench/saml_cost.py`.
"""

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from federation.saml import ServiceProvider  # noqa: E402
from keys.saml import new_sp_credential  # noqa: E402
from tests.saml_idp import TestIdP  # noqa: E402

ROUNDS = 41

root = Path(tempfile.mkdtemp(prefix="idp-saml-bench-"))
key_pem, cert_pem = new_sp_credential("bench")
(root / "sp.key").write_bytes(key_pem)
(root / "sp.crt").write_text(cert_pem)
idp = TestIdP(root / "idp")
acs = "https://sp.example.test/saml/org/acs"
sp = ServiceProvider(entity_id="https://sp.example.test/saml/org/metadata", acs_url=acs,
                     key_file=root / "sp.key", cert_file=root / "sp.crt", idp_metadata=idp.metadata_xml())
idp.trust_sp(sp.metadata_xml())

pairs = []
for _ in range(ROUNDS):
    request_id, location = sp.authn_request(relay_state="r")
    request = idp.parse_authn_request(location)
    pairs.append((request_id, idp.response(request, email="alice@corp.example")[0]))


def children_cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime + children_cpu()


# The first response pays for what a process does once per org (certificates, the SAML schema).
warm_up = pairs.pop()
sp.validate(warm_up[1], warm_up[0])
start_cpu, start_children, start_wall = cpu(), children_cpu(), time.perf_counter()
for request_id, response in pairs:
    sp.validate(response, request_id)
each_cpu = (cpu() - start_cpu) / len(pairs) * 1000
each_children = (children_cpu() - start_children) / len(pairs) * 1000
each_wall = (time.perf_counter() - start_wall) / len(pairs) * 1000
print(f"SAML response validation: {each_cpu:.2f} ms CPU each (this process + children; children "
      f"{each_children:.2f} ms), {each_wall:.1f} ms wall, over {len(pairs)} responses")

start_cpu = cpu()
for _ in range(ROUNDS):
    sp.new_client()
print(f"  building the pysaml2 client (config + metadata), done once per org and process: "
      f"{(cpu() - start_cpu) / ROUNDS * 1000:.1f} ms")
