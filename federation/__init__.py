"""Bringing identities back from elsewhere: home-realm discovery, SAML, social and enterprise OIDC.

It returns identities; `idp` decides what they sign in to.
"""
