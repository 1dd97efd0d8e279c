"""MONGO_URI shown without its secrets, split where pymongo splits it."""

from __future__ import annotations

import pytest
from pymongo import uri_parser

from portkey_user_proxy.mongodb.uri import masked_mongo_uri, mongo_uri_secrets

SECRET = "topsecret"


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("mongodb://mongodb:27017/LibreChat", "mongodb://mongodb:27017/LibreChat"),
        (
            "mongodb://us%40er:p%2Fss@h1:27017,h2:27018/LibreChat?authSource=admin&replicaSet=rs0",
            "mongodb://(credentials hidden)@h1:27017,h2:27018/LibreChat?authSource=admin&replicaSet=rs0",
        ),
        (
            "mongodb+srv://u:secret@cluster.example.net/LibreChat?authMechanismProperties=AWS_SESSION_TOKEN:tok",
            "mongodb+srv://(credentials hidden)@cluster.example.net/LibreChat?authMechanismProperties=(hidden)",
        ),
        # pymongo separates options with `;` as with `&`.
        (
            f"mongodb://u:p@db:27101/LibreChat?authSource=$external;authMechanism=MONGODB-AWS;"
            f"authMechanismProperties=AWS_SESSION_TOKEN:{SECRET}",
            "mongodb://(credentials hidden)@db:27101/LibreChat?authSource=$external&authMechanism=MONGODB-AWS"
            "&authMechanismProperties=(hidden)",
        ),
        # The `/` before the options is optional.
        (
            f"mongodb://u:p@db:27101?tls=true&tlsCertificateKeyFilePassword={SECRET}",
            "mongodb://(credentials hidden)@db:27101?tls=true&tlsCertificateKeyFilePassword=(hidden)",
        ),
        (
            f"mongodb://db/?tlsCAFile=/etc/ssl/ca.pem&tlsCertificateKeyFilePassword={SECRET}",
            "mongodb://db/?tlsCAFile=(hidden)&tlsCertificateKeyFilePassword=(hidden)",
        ),
        # A key pymongo does not know, or a piece that is not key=value, may be pasted text: all of it is hidden.
        (f"mongodb://db/LibreChat?{SECRET}=1&{SECRET}", "mongodb://db/LibreChat?(hidden)&(hidden)"),
    ],
)
def test_mongo_uri_is_shown_without_credentials_or_secret_options(uri: str, shown: str) -> None:
    assert masked_mongo_uri(uri) == shown


@pytest.mark.parametrize(
    "uri",
    [
        f"mongodb://u:p@db/LibreChat?authSource=admin;authMechanismProperties=AWS_SESSION_TOKEN:{SECRET}",
        f"mongodb://u:p@db?tls=true&tlsCertificateKeyFilePassword={SECRET}",
        f"mongodb://u:{SECRET}@db:27017/LibreChat?authSource=admin",
    ],
)
def test_the_secrets_of_a_mongo_uri_are_the_ones_pymongo_reads(uri: str) -> None:
    parsed = uri_parser.parse_uri(uri, validate=False)
    assert SECRET in str(parsed)  # pymongo reads the secret as a value of its own

    assert SECRET in mongo_uri_secrets(uri)
    assert {"admin", "true", "db"}.isdisjoint(mongo_uri_secrets(uri))  # plain values and hosts are no secret
