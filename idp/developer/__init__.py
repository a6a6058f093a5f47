"""The developer portal (/developer): a person's own client apps, the same data as RFC 7591."""
