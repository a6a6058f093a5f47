"""CPU cost of validating one SAML response at our ACS (federation.saml.ServiceProvider.validate),
and of a whole SAML sign-in at the ACS: the IdP's POST, the parked response consumed, the
person created just in time and signed in, through to the redirect carrying the code.

Signatures are verified in-process (signxml); pysaml2 alone would run xmlsec1 per signature,
so the cost counted is this process's CPU plus its children's, and the children's share is
printed apart (it must stay 0). Uses the tests' pysaml2 IdP to make real signed responses
(Response and Assertion both signed, RSA-SHA256).
The whole sign-in runs the app in-process (Flask's test client, a fresh SQLite instance; set
BENCH_DATABASE_URL for another database, whose server's CPU is then not counted); each browser's
AuthnRequest and the IdP's signed answer are made before counting.
Run: `.venv/bin/python -W ignore bench/saml_cost.py` (`--profile`: then the top lines of a
cProfile, on process CPU time, of the validations and of the sign-ins, after the figures).
"""

import cProfile
import html
import os
import pstats
import re
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
PROFILE = "--profile" in sys.argv[1:]

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


# --------------------------------------------------------------------------- a whole sign-in

os.environ["IDP_INSTANCE_DIR"] = str(root / "instance")
os.environ.pop("IDP_DATABASE_URL", None)
if os.environ.get("BENCH_DATABASE_URL"):
    os.environ["IDP_DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
os.environ["IDP_LOG_LEVEL"] = "ERROR"

from urllib.parse import urlencode, urlsplit  # noqa: E402

from idp import create_app, orgs  # noqa: E402
from idp.cli import initialize  # noqa: E402
from idp.server import keep_for_good  # noqa: E402
from idp.clients import create_client  # noqa: E402

REDIRECT = "http://127.0.0.1:9/cb"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
app = create_app()
initialize(app)
keep_for_good()  # as each `idp serve` worker does once its app is built (`server.worker_app`)
signin_idp = TestIdP(root / "signin-idp")
with app.app_context():
    org = orgs.create("bench-corp", ["bench-corp.example"])
    idp_metadata = root / "signin-idp.xml"
    idp_metadata.write_text(signin_idp.metadata_xml())
    orgs.attach_saml(org, str(idp_metadata))
    signin_idp.trust_sp(orgs.sp_metadata(org))
    product, _ = create_client({"client_name": "bench", "redirect_uris": [REDIRECT]}, first_party=True)
    product_id = product.client_id
    # As a server running for a while sees it: the SP credential made long ago (settled).
    from datetime import timedelta

    from idp.store import SpCredential, db
    for credential in db.session.query(SpCredential):
        credential.created_at -= timedelta(days=1)
    db.session.commit()


def follow(http, resp):
    while resp.status_code in (301, 302, 303) and not resp.headers["Location"].startswith(REDIRECT):
        resp = http.get(urlsplit(resp.headers["Location"])._replace(scheme="", netloc="").geturl())
    return resp


def at_the_idp(n: int):
    """A browser sent to the org's IdP, and the IdP's signed answer (not counted)."""
    http = app.test_client()
    query = urlencode({"response_type": "code", "client_id": product_id, "redirect_uri": REDIRECT,
                       "scope": "openid email profile", "state": f"s{n}", "nonce": f"n{n}"})
    page = follow(http, http.get(f"/authorize?{query}"))
    action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', page.text).group(1))
    page = follow(http, http.post(action, data={"csrf_token": CSRF.search(page.text).group(1),
                                                "email": f"person{n}@bench-corp.example"}))
    location = html.unescape(re.search(r'<a class="button" role="button" href="([^"]+)"', page.text).group(1))
    request = signin_idp.parse_authn_request(location)
    response, acs = signin_idp.response(request, email=f"person{n}@bench-corp.example")
    return http, urlsplit(acs).path, {"SAMLResponse": response, "RelayState": request["relay_state"]}


def sign_in(http, acs_path, form) -> None:
    done = follow(http, http.post(acs_path, data=form))
    assert done.status_code in (302, 303) and "code=" in done.headers["Location"], done.text[:300]


server_cpu = [0.0]
serve = app.wsgi_app


def counted(environ, start_response):
    """The app's own CPU per request: the test client's work (encoding the form, parsing the
    answer) is the browser's, not ours."""
    start = cpu()
    try:
        return list(serve(environ, start_response))
    finally:
        server_cpu[0] += cpu() - start


app.wsgi_app = counted
sign_in(*at_the_idp(0))  # the first one pays for the org's SP, certificates and schema
browsers = [at_the_idp(n) for n in range(1, ROUNDS)]
server_cpu[0], start_children, start_cpu = 0.0, children_cpu(), cpu()
for browser in browsers:
    sign_in(*browser)
each_cpu = server_cpu[0] / len(browsers) * 1000
each_children = (children_cpu() - start_children) / len(browsers) * 1000
each_all = (cpu() - start_cpu) / len(browsers) * 1000
print(f"Whole SAML sign-in (ACS POST, parked response consumed, person created, redirect with the code): "
      f"{each_cpu:.2f} ms CPU each in the app (children {each_children:.2f} ms; {each_all:.2f} ms with the "
      f"test client's own work), over {len(browsers)} sign-ins")


if PROFILE:
    def top(title: str, profile: cProfile.Profile) -> None:
        print(f"\n--- {title}")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)

    profile = cProfile.Profile(time.process_time)
    fresh = []
    for _ in range(ROUNDS):
        request_id, location = sp.authn_request(relay_state="r")
        fresh.append((request_id, idp.response(idp.parse_authn_request(location), email="alice@corp.example")[0]))
    profile.enable()
    for request_id, response in fresh:
        sp.validate(response, request_id)
    profile.disable()
    top(f"{ROUNDS} validations", profile)

    browsers = [at_the_idp(n) for n in range(ROUNDS, 2 * ROUNDS)]
    profile = cProfile.Profile(time.process_time)

    def profiled(environ, start_response):
        profile.enable()
        try:
            return list(serve(environ, start_response))
        finally:
            profile.disable()

    app.wsgi_app = profiled
    for browser in browsers:
        sign_in(*browser)
    top(f"{ROUNDS} whole sign-ins (the app's side)", profile)
