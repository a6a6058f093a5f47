"""OAuth 2.0 and OpenID Connect on Authlib's server framework."""
