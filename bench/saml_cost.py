"""CPU cost of validating one SAML response at our ACS (federation.saml.ServiceProvider.validate).

pysaml2 verifies signatures by running xmlsec1, so the cost is this process's CPU plus
its children's. Uses the tests' pysaml2 IdP to make real signed responses.
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

ROUNDS = 20

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


def cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


start_cpu, start_wall = cpu(), time.perf_counter()
for request_id, response in pairs:
    sp.validate(response, request_id)
each_cpu = (cpu() - start_cpu) / ROUNDS * 1000
each_wall = (time.perf_counter() - start_wall) / ROUNDS * 1000
print(f"SAML response validation: {each_cpu:.1f} ms CPU each (this process + xmlsec1), {each_wall:.1f} ms wall")

start_cpu = cpu()
for _ in range(ROUNDS):
    sp.new_client()
print(f"  building the pysaml2 client (config + metadata), done once per org and process: "
      f"{(cpu() - start_cpu) / ROUNDS * 1000:.1f} ms")
