"""An account's life: who may sign in, and what an account keeps when someone new proves it.

The pre-account takeover (Sudhodanan & Paverd, "Pre-hijacked accounts", 2022): someone
signs up with another person's address, plants a password, a linked social account, a
passkey or a session, and waits for the address's owner to verify the mail, reset the
password or arrive through their company's Enterprise Sign-In — which then adopts the
row with everything planted in it. The rules here close it:

- an unverified account can do nothing but verify (no session, so no linking, no
  factors, no device approvals, no products);
- whoever adopts an unverified row (first verification, a reset link, a just-in-time
  sign-in, an org admin's invitation) keeps only what their proof covers: every credential,
  link, factor, session, grant and consent they did not prove is wiped first;
- an org adopting a row another org let go (`join_org`) wipes it so too: the address may
  have changed hands with its domain, and the org vouches for its own person, not for
  whoever the other org let go. A rehire by the org that let the person go keeps it all.

Every path that changes these states calls this module. It also holds the org's sign-in
options (`policy_orgs` and below): which ways in an org allows its people, and whether
they must have a second factor. Each sign-in path and `sessions.current` ask here.
"""

from __future__ import annotations

from sqlalchemy import JSON, bindparam, delete, false, or_, select, update

from . import audit, mail_tokens, session_rules, sessions
from .i18n import current_language
from .mail import link_to, stage_mail
from .org_record import LEFT_BEHIND
from .passwords import password_columns
from .store import (
    Consent,
    Group,
    GroupMember,
    LinkedIdentity,
    MailToken,
    Org,
    Passkey,
    RecoveryCode,
    TotpFactor,
    TrustedDevice,
    User,
    db,
    dialect_insert,
    utcnow,
)


def wipe_unproven(user: User, *, keep_password: bool, org=None) -> None:
    """Remove what someone other than the prover may have planted on `user`: the password
    (unless the prover proved it), linked identities, passkeys, the authenticator app and
    recovery codes, trusted devices, consents, unused mailed links; end every session and
    revoke every grant (back-channel logout included). The name and language typed in the
    sign-up form with an unproven password go with it: the `name` claim every product is
    given for the owner must not be a stranger's choice. `org`: the org adopting the row,
    whose audit log shows the event. One commit, then the products are told."""
    mine = sessions.this_browsers()  # read first: it may commit (last seen), which must not split the change
    for column, value in _cleared(user, keep_password=keep_password).items():
        setattr(user, column, value)
    _wipe_planted(user, keep_password=keep_password, org=org)
    db.session.commit()
    sessions.signed_out_everywhere(user, mine)


def _cleared(user: User, *, keep_password: bool) -> dict:
    """The account's own columns `wipe_unproven` resets, with their new values."""
    if keep_password:
        return {}
    values = {"password_hash": None, "password_changed_at": utcnow()}  # reset links sent before now die too
    if user.password_hash is not None:  # an invitation's row has none: its names are the org's
        values.update(name=None, given_name=None, family_name=None, locale=None)
    return values


def _wipe_planted(user: User, *, keep_password: bool, org=None) -> None:
    """The writes of `wipe_unproven` other than the account's own columns (its audit event
    among them), left to the caller's commit; `sessions.signed_out_everywhere` follows it."""
    for model in (LinkedIdentity, Passkey, TotpFactor, RecoveryCode, TrustedDevice, Consent):
        db.session.execute(delete(model).where(model.user_id == user.id))
    mail_tokens.void_all(user)
    sessions.end_everything(user)
    # The adopting org's id in the detail too: the log line (`audit.log_event`) names no org.
    audit.record("account.adopted", user, org=org, kept_password=keep_password, commit=False,
                 **({"adopted_by": getattr(org, "id", org)} if org is not None else {}))


def remove_unproven(email: str) -> str | None:
    """Delete the account at `email` when it is an unverified sign-up in no org and not an
    operator's (anyone may make one; nothing of it is proven, so nothing is anyone's to
    keep): the id it had, else None. Whatever is keyed by its id (its mailed verification
    link, events, and the sessions and grants it cannot have) goes with it by the foreign
    keys' ON DELETE CASCADE. One statement, checked as it deletes: a row verified, adopted or
    made an operator's meanwhile stays. The caller commits."""
    return db.session.execute(
        delete(User).where(User.email == email, User.email_verified == false(), User.org_id.is_(None),
                           User.is_admin == false()).returning(User.id)).scalar()


def verify_email(user: User, link: MailToken, *, password_proven: bool) -> bool:
    """The mailed `link` was opened: the mailbox is proven, and the password too when the
    sign-up form was filled in this browser or the password was typed again. For an
    unverified row: verified and adopted (as `wipe_unproven`), with both events. One
    transaction, as `_changed_by_link`: False, nothing written, when the link was spent or the
    row verified or deleted meanwhile."""
    if user.email_verified:
        return _changed_by_link(user, link, {}, adopting=False)
    return _changed_by_link(
        user, link, {"email_verified": True, **_cleared(user, keep_password=password_proven)},
        adopting=True, keep_password=password_proven,
        then=lambda: audit.record("email.verified", user, commit=False))


def reset_password(user: User, link: MailToken, password: str, *, event: str, invited: bool = False,
                   everywhere: bool = False, **detail) -> bool:
    """A mailed `link` (a reset, or an invitation when `invited`) proves the mailbox and sets a
    new password; an unverified row is adopted by it (verified, and cleared of all it did
    not prove). A verified account that had no password (company, social or passkey sign-in
    only) gains a way in by a reset: told to its owner as a change, since whoever read the
    mailbox for a moment may not be them. An invitation's first password is the person
    arriving, and an adopted row's replaces one nobody proved: no news to anyone. The audit
    `event` (with `detail`) and, when `everywhere`, the end of every session are written with
    it. One transaction, as `_changed_by_link`: False, nothing written, when the link was
    spent or the row deleted meanwhile (or, when unverified, verified meanwhile)."""
    adopting = not user.email_verified
    tell = not adopting and (user.password_hash is not None or not invited)
    values = password_columns(password)  # hashed before the first write: no lock is held meanwhile
    if adopting:
        values = {**_cleared(user, keep_password=False), "email_verified": True, **values}

    def then():
        audit.record(event, user, commit=False, **detail)
        return _staged_password_changed(user) if tell else None

    # As `mail_tokens.find` checked it, again as the row is written: a password changed
    # meanwhile (on /account, or by another link) ends this link, whatever moment it came.
    unchanged = or_(User.password_changed_at.is_(None), User.password_changed_at <= link.created_at)
    return _changed_by_link(user, link, values, adopting=adopting, keep_password=False, everywhere=everywhere,
                            then=then, still=(unchanged,))


def _changed_by_link(user: User, link: MailToken, values: dict, *, adopting: bool, keep_password: bool = True,
                     everywhere: bool = False, then=None, still=()) -> bool:
    """A mailed `link`'s change to `user` in one commit: the account's row set to `values`,
    the link spent and, when `adopting` an unverified row, what `wipe_unproven` writes (or,
    when `everywhere`, the end of every session of the account, as `sessions.sign_out_everywhere`);
    then the writes of `then()`, when given, which returns what to call after the commit, or
    None. The products are told after the commit. False, nothing written, when the link was
    spent or the row deleted meanwhile (or, when `adopting`, verified meanwhile; or no longer
    meets the conditions `still`, checked as it is written): a directory's rename deletes a
    stranger's unverified sign-up at its new address (`remove_unproven`), in another
    transaction that may commit at any moment of this one."""
    mine = sessions.this_browsers()  # read first: it may commit (last seen), which must not split the change
    # The account's row first, checked as it is written: a DELETE of the row takes it and then
    # its links (ON DELETE CASCADE), so the two wait for each other in one order (no deadlock),
    # and every later write of this transaction names a row that stays until the commit.
    unverified = (User.email_verified == false(),) if adopting else ()
    if values and db.session.execute(
            update(User).where(User.id == user.id, *unverified, *still).values(**values)).rowcount != 1:
        db.session.rollback()
        return False
    if not mail_tokens.consume(link):  # before `_wipe_planted`, which spends every unused link
        db.session.rollback()
        return False
    if adopting:
        _wipe_planted(user, keep_password=keep_password)
    elif everywhere:
        sessions.end_everything(user)
    after = then() if then is not None else None
    db.session.commit()
    if adopting or everywhere:
        sessions.signed_out_everywhere(user, mine)
    if after is not None:
        after()
    return True


def change_password(user: User, password: str) -> None:
    """Store `password` as `user`'s (a signed-in browser's change), committed with the mail
    that tells its owner."""
    # hashed before the mail's INSERT opens the write transaction
    for column, value in password_columns(password).items():
        setattr(user, column, value)
    told = _staged_password_changed(user)
    db.session.commit()
    told()


def _staged_password_changed(user: User):
    """The "password_changed" mail to `user`, staged in this transaction: what to call after its
    commit. Told in the change's own commit (OWASP ASVS 4.0 2.2.3): whoever changed it (a
    signed-in browser, a reset link read in the mailbox) may not be them, and no crash leaves
    a changed password untold."""
    return stage_mail(user.email, "password_changed", user.locale or current_language(),
                      link=link_to("password.forgot"))


def just_in_time(org: Org, identity, method: str = "saml", *, commit: bool = True) -> User | None:
    """The account for an email the org's IdP vouches for: created on first sign-in, kept
    a member of the org, names refreshed from the IdP. An unverified row with this address
    is adopted (its password and all else wiped); None for a disabled account, and for an
    operator's (`is_admin`): an org's IdP is whatever its admins point it at, and an org never
    manages this deployment's operators (as SCIM's `in_org` and the Admin Center hold), so it
    must not sign one in or move one into the org. With `commit` False, the change and its
    audit event wait for the caller's commit."""
    user = by_email(identity.email)
    if user is None:
        made = _created_just_in_time(org, identity, method)
        if made is not None:
            return made
        # A first sign-in of the same person on another server made it meanwhile (a double
        # click on the IdP's app tile): it is the account, as if it had been there before.
        user = by_email(identity.email)
        if user is None:  # made and deleted again in that moment: nobody to sign in
            return None
    if user.disabled or user.is_admin:
        return None
    if user.org_id is not None and user.org_id != org.id:
        # An admin of another org stays none of this one's: `org_admin` means admin of `org_id`,
        # and only this org's admins (or an operator) make one of its members an admin.
        leave_org(user, moved_to=org.id)
        user.left_org_id = None  # moved, not let go: `join_org`'s rule is for a row in no org
    join_org(user, org)
    user.email_verified = True
    for field in ("given_name", "family_name", "name"):
        value = getattr(identity, field)
        if value:
            setattr(user, field, value)
    if not user.name and (user.given_name or user.family_name):
        user.name = joined_name(user.given_name, user.family_name)
    if commit:
        db.session.commit()
    return user


def joined_name(given_name: str | None, family_name: str | None) -> str | None:
    """The name of an account its IdP gave only the parts of: two of 100 characters and the
    space between them are one more than the 200 an account keeps."""
    return " ".join(p for p in (given_name, family_name) if p)[:200] or None


def leave_org(user: User, **detail) -> None:
    """`user` is no member of their org any more, and leaves behind what was the org's: its
    directory's record of them (externalId, every attribute it sent, group memberships) and
    the admin role there, whose loss the org's audit log shows (`admin.removed`, with
    `detail`). An org they join next must read none of it. Which org they left is kept
    (`join_org`). The caller commits."""
    if user.org_admin:
        audit.record("admin.removed", user, org=user.org_id, commit=False, **detail)
    # Their groups' members change, so do the groups' versions (ETag, meta.lastModified), as
    # when the directory changes a group's members itself (RFC 7644 §3.14): a directory
    # holding the old version must not overwrite the group with the leaver still in it.
    held = select(GroupMember.group_id).where(GroupMember.user_id == user.id)
    db.session.execute(update(Group).where(Group.id.in_(held)).values(updated_at=utcnow()))
    db.session.execute(delete(GroupMember).where(GroupMember.user_id == user.id))
    user.left_org_id = user.org_id
    user.org_id = None
    for column, value in LEFT_BEHIND.items():
        setattr(user, column, value)


def join_org(user: User, org) -> bool:
    """`user`, in no org, becomes a member of `org` (an Org, SCIM's ScimOrg or an id); the
    caller commits. The org vouches for the person at the address, not for what the row
    holds: an unverified row (anyone may sign up), or one another org let go (its domain,
    and the address with it, may have changed hands), is first wiped of every credential,
    link, factor, session and grant (`wipe_unproven`). A verified row never in an org, or
    one this org let go (a rehire), keeps all it holds. True when the row was wiped: the
    person then has no way in yet but the org's IdP or its invitation."""
    org_id = getattr(org, "id", org)
    wiped = not user.email_verified or user.left_org_id not in (None, org_id)
    if wiped:
        wipe_unproven(user, keep_password=False, org=org_id)
    user.org_id = org_id
    user.left_org_id = None
    return wiped


def _created_just_in_time(org, identity, method: str) -> User | None:
    """The new account and its signup event, left to the caller's commit: a table insert
    built once (the unit of work cost more than the insert), the row then handed to the
    session as the persistent account it now is. None, nothing written, when the address is
    taken by an account another transaction committed since it was looked up (the insert
    waits for that one: the unique address decides, not the lookup before)."""
    values = {key: (None if default is None else default.arg if default.is_scalar else default.arg(None))
              for key, default in _USER_DEFAULTS.items()}
    values.update(email=identity.email, email_verified=True, org_id=org.id, given_name=identity.given_name or None,
                  family_name=identity.family_name or None, name=identity.name or None)
    if not values["name"] and (values["given_name"] or values["family_name"]):
        values["name"] = joined_name(values["given_name"], values["family_name"])
    db.session.flush()  # what the session holds first, as the unit of work ordered it
    # A None for a JSON column would be stored as JSON null: left out, it is SQL NULL, as
    # the ORM writes an attribute never set.
    made = db.session.connection().execute(
        _insert_user(), {k: v for k, v in values.items() if k not in _JSON or v is not None}).first()
    if made is None:
        return None
    user = sessions.attach_loaded(User, values)
    audit.record("signup", user, method=method, org=org.id, commit=False)
    return user


_USERS = User.__table__
# Column defaults as the ORM would apply them on insert (all scalars or argument-free callables).
_USER_DEFAULTS = {c.key: c.default for c in _USERS.c}
_INSERT_USER: dict[str, object] = {}  # per dialect


def _insert_user():
    """INSERT ... ON CONFLICT (email) DO NOTHING RETURNING id, built once per dialect: no
    row returned when the address was taken meanwhile (RETURNING says what happened;
    rowcount is not reliable for DO NOTHING)."""
    dialect = db.engine.dialect.name
    statement = _INSERT_USER.get(dialect)
    if statement is None:
        statement = _INSERT_USER[dialect] = (dialect_insert(dialect)(_USERS)
                                             .on_conflict_do_nothing(index_elements=[_USERS.c.email])
                                             .returning(_USERS.c.id))
    return statement
_JSON = {c.key for c in _USERS.c if isinstance(c.type, JSON)}
# Built once, run on the session's connection (no ORM execute or loading layer): the
# password step and every just-in-time sign-in ask.
_USER_BY_EMAIL = select(_USERS).where(_USERS.c.email == bindparam("b_email"))


def by_email(address: str) -> User | None:
    """The account with this address (normalized), or None."""
    db.session.flush()  # as the ORM's autoflush did
    row = db.session.connection().execute(_USER_BY_EMAIL, {"b_email": address}).first()
    if row is None:
        return None
    # The account this session holds already wins, as for an ORM query.
    user = db.session.identity_map.get(db.session.identity_key(User, row.id))
    return user if user is not None else sessions.attach_loaded(User, dict(row._mapping))


def can_sign_in(user: User | None) -> bool:
    """True for an account that may hold a session: it exists, is enabled and verified."""
    return user is not None and not user.disabled and user.email_verified


# --- the org's sign-in options -------------------------------------------------------


def policy_orgs(user: User) -> list:
    """The orgs whose sign-in options bind `user`: the org they are a member of, and the org
    owning their address's domain (as for enforced Enterprise Sign-In: an account made
    before its domain joined an org is bound all the same). The strictest option wins."""
    from federation.discovery import domain_of, org_for_email

    from . import orgs

    held = db.session.identity_map
    if db.session.new or db.session.dirty or db.session.deleted:
        # this transaction changes rows: read through it, as committed views cannot see that
        found = [db.session.get(Org, user.org_id) if user.org_id else None]
        by_domain = org_for_email(user.email) if user.email else None
    else:
        # The orgs as committed, kept per process (`orgs.view`: every page of a signed-in
        # browser asks); an org this session holds wins, as for an ORM get.
        found = [_held_or(held, orgs.view, user.org_id) if user.org_id else None]
        by_domain = _held_or(held, orgs.view_of_domain, domain_of(user.email)) if user.email else None
    if by_domain is not None and by_domain.id != user.org_id:
        found.append(by_domain)
    return [org for org in found if org is not None]


def _held_or(held, read, key: str):
    org = read(key)
    if org is None:
        return None
    return held.get(db.session.identity_key(Org, org.id)) or org


def own_idp_signs_in(user: User) -> bool:
    """The org `user` is a member of can sign them in with its IdP: it has one, and their
    address is at one of its domains (the only addresses the ACS and the enterprise OpenID
    callback take); never an operator (`just_in_time`). Membership alone is no way in."""
    from federation.discovery import org_for_email

    from . import orgs

    if user.org_id is None or user.is_admin:
        return False
    org = org_for_email(user.email)
    return org is not None and org.id == user.org_id and orgs.has_idp(org)


def social_allowed(user: User) -> bool:
    """False when an org of `user` forbids signing in with (or linking) a social account."""
    return session_rules.social_allowed(policy_orgs(user))


def passkeys_allowed(user: User) -> bool:
    """False when an org of `user` forbids passkeys: none signs in, confirms a sign-in or is
    added (the org decided passkeys are not a credential for its people)."""
    return session_rules.passkeys_allowed(policy_orgs(user))


def second_factor_required(user: User) -> bool:
    return any(org.require_mfa for org in policy_orgs(user))


def must_set_up_second_factor(user: User) -> bool:
    """True when an org of `user` requires a second factor and the account has none (that
    counts): the sign-in makes them set one up before any session exists."""
    from .mfa import has_second_factor

    return second_factor_required(user) and not has_second_factor(user)


def _own_idp(org) -> bool:
    """The org has its own IdP (SAML or enterprise OpenID) to sign its people in."""
    from .social import enterprise_provider

    return bool(org.saml_metadata) or enterprise_provider(org.id) is not None


def session_meets_policy(row) -> bool:
    """Whether this browser session counts under its person's orgs' rules (`session_rules`)."""
    return session_standing(row.user, row.amr, row.idp_org_id, row.mfa_time)


def session_standing(user, amr, idp_org_id: str | None, mfa_time: int | None) -> bool:
    """`session_meets_policy` of a session with these facts; `user`: its account, or anything
    with the account's `id`, `email` and `org_id` (`grants.Person`)."""
    from .mfa import has_second_factor

    return session_rules.session_counts(amr, idp_org_id, mfa_time, lambda: policy_orgs(user),
                                        lambda: has_second_factor(user), _own_idp)


def disable(user: User) -> None:
    """No method signs `user` in any more, and every session and grant they hold ends now
    (back-channel logout included). Links mailed before (invitation, reset) die too: a
    disabled account refuses them, and an enabled one must not take them back."""
    user.disabled = True
    mail_tokens.void_all(user)
    db.session.commit()
    sessions.sign_out_everywhere(user)


def enable(user: User) -> None:
    user.disabled = False
    db.session.commit()


def reset_second_factor(user: User) -> None:
    """Remove the authenticator app, recovery codes and passkeys (a lost phone): the next
    sign-in asks for the password only, and the person may set up a factor again. The
    caller commits (notices.record)."""
    from .mfa.devices import revoke_all

    for model in (TotpFactor, RecoveryCode, Passkey):
        db.session.execute(delete(model).where(model.user_id == user.id))
    revoke_all(user)  # trusted with the factors just removed: the next ones are asked everywhere
