"""The sign-in flow: email step, then the method the email leads to, then back to /authorize."""
