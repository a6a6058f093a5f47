"""Token exchange (RFC 8693): a client trades a person's access token it holds for a
narrower one meant for another product (the `audience`), acting on that person's behalf.

What a client may do here is operator policy: the grant type registered for it, and the
audiences (client ids) in `Client.token_exchange_audiences`. The subject token must be a
live JWT access token of ours issued to the same client; the new token keeps its subject,
grant and (at most) its scope, names the audience, and says who acts in `act`
(RFC 8693 §4.1), nesting the subject token's own `act`. No refresh token is issued.
DPoP holds as for every grant: a `--require-dpop` client must send a proof, a proof binds
the new token, and a DPoP-bound subject token needs a proof of its own key.
"""

from __future__ import annotations

import logging

from authlib.oauth2.rfc6749 import InvalidRequestError, InvalidScopeError, UnauthorizedClientError, grants

from ..store import Grant, User, db
from ..store.clients import TOKEN_EXCHANGE
from . import dpop, tokens
from .grants import CONFIDENTIAL_AUTH_METHODS
from .resources import InvalidTargetError

log = logging.getLogger(__name__)

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
SINGLE_VALUED = ("subject_token", "subject_token_type", "actor_token", "actor_token_type", "requested_token_type",
                 "audience", "scope")


class TokenExchangeGrant(grants.BaseGrant, grants.TokenEndpointMixin):
    GRANT_TYPE = TOKEN_EXCHANGE
    # A backend calling another product: it authenticates (RFC 8693 §2.1 leaves it to policy).
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def validate_token_request(self):
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'")
        dpop.check_client_policy(client, self.request)  # as every other grant: --require-dpop holds here too
        self.request.client = client
        form = self.request.payload.datalist
        for name in SINGLE_VALUED:
            if len(form.get(name, [])) > 1:
                raise InvalidRequestError(f"{name} repeated")
        data = self.request.payload.data
        if not data.get("subject_token") or not data.get("subject_token_type"):
            raise InvalidRequestError("subject_token and subject_token_type are required")
        if data["subject_token_type"] != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError(f"subject_token_type must be {ACCESS_TOKEN_TYPE}")
        if data.get("actor_token") or data.get("actor_token_type"):
            raise InvalidRequestError("actor_token is not supported: the authenticated client is the actor")
        if data.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError(f"requested_token_type must be {ACCESS_TOKEN_TYPE}")
        if form.get("resource"):
            raise InvalidTargetError("name the product in audience (its client_id); resource is not used here")
        audience = data.get("audience")
        if not audience:
            raise InvalidRequestError("audience is required: the client_id of the product the token is for")
        if audience not in (client.token_exchange_audiences or []) or self.server.query_client(audience) is None:
            raise InvalidTargetError("this client may not ask for tokens for that audience")
        claims = tokens.verify_access_token(data["subject_token"])
        # RFC 8693 §2.2.2: an unacceptable subject token is an invalid_request.
        if claims is None:
            raise InvalidRequestError("subject_token is not a valid, unexpired, unrevoked access token")
        if claims.get("client_id") != client.client_id:
            raise InvalidRequestError("subject_token was not issued to this client")
        # A bound token is presented with a proof of its key (RFC 9449 §7), here as at a
        # resource: else whoever holds it and the client's credentials unbinds it.
        cnf = claims.get("cnf")
        bound = cnf.get("jkt") if isinstance(cnf, dict) else None
        proof = dpop.proof_of(self.request)
        if bound and (proof is None or not dpop.same(proof.jkt, str(bound))):
            raise InvalidRequestError("subject_token is DPoP-bound: send a DPoP proof of its key")
        grant = db.session.get(Grant, claims["gid"]) if claims.get("gid") else None
        user = db.session.get(User, grant.user_id) if grant is not None else None
        if user is None or user.disabled or claims.get("sub") != user.id:
            raise InvalidRequestError("subject_token must be a person's access token")
        held = str(claims.get("scope", "")).split()
        wanted = data["scope"].split() if "scope" in data else held
        if not set(wanted) <= set(held):
            raise InvalidScopeError("the scope can only be narrower than the subject token's")
        self.request.user = user
        self.exchange = (claims, grant, audience, " ".join(dict.fromkeys(wanted)))

    def create_token_response(self):
        claims, grant, audience, scope = self.exchange
        client = self.request.client
        act = {"sub": client.client_id}
        if isinstance(claims.get("act"), dict):
            act["act"] = claims["act"]
        proof = dpop.proof_of(self.request)
        jkt = proof.jkt if proof else None  # bound to the proof's key, as every grant's (RFC 9449 §5)
        # Never past the subject token's expiry: else exchanging each new token for the next
        # would keep the person's access alive without end (and without a refresh token).
        access_token, ttl = tokens.issue_access_token(client, self.request.user, scope, grant,
                                                      audience=audience, act=act, jkt=jkt,
                                                      not_after=int(claims["exp"]))
        log.info("token exchange client=%s audience=%s sub=%s scope=%s", client.client_id, audience,
                 self.request.user.id, scope)
        token = {"access_token": access_token, "issued_token_type": ACCESS_TOKEN_TYPE,
                 "token_type": "DPoP" if jkt else "Bearer",
                 "expires_in": ttl}
        if scope:
            token["scope"] = scope
        return 200, token, self.TOKEN_RESPONSE_HEADER
