"""`larval pki`: keys, certificates and CRLs for IKE, as strongSwan's `pki` makes them."""

from __future__ import annotations

import argparse
import os
import sys

from cryptography import x509

from larval import pki
from larval.commands.args import number

_LIFETIME = number(1, 36500, "days")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("pki", help="keys, certificates and CRLs (like strongSwan's pki)")
    ops = p.add_subparsers(dest="pki_op", metavar="OP", required=True)

    gen = ops.add_parser("gen", help="a new private key (PKCS#8)")
    gen.add_argument("--type", choices=("rsa", "ecdsa", "ed25519"), default="rsa",
                     help="the key type (default rsa)")  # fmt: skip
    gen.add_argument("--size", type=int, help="RSA 2048-8192 (3072), ECDSA 256/384/521 (256)")
    _output(gen)

    self_ = ops.add_parser("self", help="a self-signed certificate (a CA with --ca)")
    self_.add_argument("--in", dest="key", required=True, help="the private key")
    _certificate_options(self_)

    issue = ops.add_parser("issue", help="a certificate issued by a CA")
    subject = issue.add_mutually_exclusive_group(required=True)
    subject.add_argument("--in", dest="key", help="the subject's private or public key")
    subject.add_argument("--req", help="the subject's PKCS#10 request")
    issue.add_argument("--cacert", required=True, help="the CA certificate")
    issue.add_argument("--cakey", required=True, help="the CA's private key")
    _certificate_options(issue, dn_required=False)

    for name, help_ in (
        ("print", "what a certificate, CRL or key holds"),
        ("keyid", "the key IDs of a key or certificate"),
    ):
        read = ops.add_parser(name, help=help_)
        where = read.add_mutually_exclusive_group(required=True)
        where.add_argument("--in", dest="file", help="the file (PEM or DER)")
        where.add_argument("path", nargs="?", metavar="FILE", help="the same, as an argument")

    crl = ops.add_parser("signcrl", help="a CRL revoking certificates")
    crl.add_argument("--cacert", required=True, help="the CA certificate")
    crl.add_argument("--cakey", required=True, help="the CA's private key")
    crl.add_argument("--reason", choices=tuple(pki.REASONS), help="why they are revoked")
    crl.add_argument("--cert", action="append", default=[], help="a certificate to revoke (repeat)")
    crl.add_argument("--lifetime", type=_LIFETIME, default=15, help="days until the next update")
    _output(crl)


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--outform", choices=("pem", "der"), default="pem",
                   help="the encoding written (default pem)")  # fmt: skip
    p.add_argument("--out", help="the file to write (default: standard output)")


def _certificate_options(p: argparse.ArgumentParser, dn_required: bool = True) -> None:
    p.add_argument(
        "--dn", required=dn_required, help='the subject, e.g. "C=CH, O=strongSwan, CN=moon"'
    )
    p.add_argument(
        "--san", action="append", default=[], help="a subjectAltName: IP, email or DNS (repeat)"
    )
    p.add_argument("--lifetime", type=_LIFETIME, default=1095, help="days of validity")
    p.add_argument(
        "--flag", action="append", default=[], choices=tuple(pki.FLAGS), help="an EKU (repeat)"
    )
    p.add_argument("--ca", action="store_true", help="a CA certificate (keyCertSign, cRLSign)")
    _output(p)


def run(args: argparse.Namespace) -> int:
    if args.pki_op in ("print", "keyid"):
        args.file = args.file or args.path
    if args.pki_op == "gen":
        key = pki.generate_key(args.type, args.size)
        _write(args, pki.private_key_bytes(key, args.outform), private=True)
    elif args.pki_op in ("self", "issue"):
        _write(args, _certificate(args).public_bytes(pki.encoding(args.outform)))
    elif args.pki_op == "print":
        print("\n".join(pki.describe_file(args.file)))
    elif args.pki_op == "keyid":
        # strongSwan's `pki --keyid` layout.
        spki_id, raw_id = pki.key_ids(pki.load_public_key(args.file))
        print(f"subjkey (SHA-1 of subjectPublicKey):\n             {pki.hex_colons(raw_id)}")
        print(f"keyid (SHA-1 of subjectPublicKeyInfo):\n             {pki.hex_colons(spki_id)}")
    else:
        ca, ca_key = _ca(args)
        revoked = [pki.load_certificate(path) for path in args.cert]
        crl = pki.make_crl(ca, ca_key, revoked, args.reason, args.lifetime)
        _write(args, crl.public_bytes(pki.encoding(args.outform)))
    return 0


def _certificate(args: argparse.Namespace) -> x509.Certificate:
    sans = [pki.parse_san(s) for s in args.san]
    if args.pki_op == "self":
        key = pki.load_private_key(args.key)
        request = pki.CertRequest(pki.parse_dn(args.dn), sans, args.lifetime, args.ca, args.flag)
        return pki.make_certificate(request, key.public_key(), key)
    ca, ca_key = _ca(args)
    if args.req is not None:
        req = pki.load_request(args.req)
        subject = pki.parse_dn(args.dn) if args.dn else req.subject
        public_key = pki.usable_public_key(req.public_key(), args.req)
    else:
        if not args.dn:
            raise pki.PkiError("--dn: needed with --in (a key carries no subject)")
        subject = pki.parse_dn(args.dn)
        public_key = pki.load_public_key(args.key)
    request = pki.CertRequest(subject, sans, args.lifetime, args.ca, args.flag)
    return pki.make_certificate(request, public_key, ca_key, issuer=ca)


def _ca(args: argparse.Namespace) -> tuple[x509.Certificate, pki.PrivateKey]:
    """--cacert and --cakey: a CA certificate and its own private key."""
    ca = pki.load_certificate(args.cacert)
    pki.check_ca(ca, args.cacert)
    ca_key = pki.load_private_key(args.cakey)
    pki.check_key_pair(ca, ca_key, args.cacert, args.cakey)
    return ca, ca_key


def _write(args: argparse.Namespace, data: bytes, private: bool = False) -> None:
    """Write to --out (a private key is created 0600, never widened and then narrowed)
    or to standard output as bytes, so that DER survives."""
    if args.out is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        if private and os.path.lexists(args.out):
            # O_CREAT's mode applies only to a new file: replace, never reuse, an old one.
            os.unlink(args.out)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_EXCL if private else 0)
        fd = os.open(args.out, flags, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as e:
        raise pki.PkiError(f"--out {args.out}: {e.strerror or e}") from None
