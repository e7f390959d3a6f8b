#!/usr/bin/env python3
"""An independent Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s peer (PyPI noiseprotocol) for udptun's
WireGuard handshake tests. Reads one JSON object on stdin, plays one side as far as the input
allows, writes one JSON object on stdout. All byte strings are hex.

Input: role ("initiator" | "responder"), static (private), ephemeral (private), psk,
  remote_static (public; initiator only), payload (the initiator's first payload: the timestamp),
  message1 (responder: the initiation's Noise part), message2 (initiator, optional: the response's
  Noise part), send (optional plaintext to encrypt once the handshake is done), receive (optional
  ciphertext to decrypt then).
Output: message1 (initiator) or message2 (responder), payload and remote_static (responder: what
  the initiation carried), sent, received, handshake_finished.

The prologue is WireGuard's identifier and the psk sits at position 2, so this speaks WireGuard's
handshake without WireGuard's framing (types, indices, MACs), which the caller strips and adds.
"""
import json
import warnings
import sys

try:
    from noise.connection import Keypair, NoiseConnection
except ModuleNotFoundError as error:
    sys.exit(f"noise-ikpsk2.py: {error}: install PyPI noiseprotocol (pip install noiseprotocol)")

# Fixed ephemeral keys are the point here (byte-for-byte comparison); noiseprotocol warns about them.
warnings.filterwarnings("ignore", message="One of ephemeral keypairs")
request = json.load(sys.stdin)
h = bytes.fromhex
connection = NoiseConnection.from_name(b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s")
if request["role"] == "initiator":
    connection.set_as_initiator()
    connection.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, h(request["remote_static"]))
else:
    connection.set_as_responder()
connection.set_keypair_from_private_bytes(Keypair.STATIC, h(request["static"]))
connection.set_keypair_from_private_bytes(Keypair.EPHEMERAL, h(request["ephemeral"]))
connection.set_psks(psks=[h(request["psk"])])
connection.set_prologue(b"WireGuard v1 zx2c4 Jason@zx2c4.com")
connection.start_handshake()

result = {}
if request["role"] == "initiator":
    result["message1"] = connection.write_message(h(request["payload"])).hex()
    if "message2" in request:
        result["payload2"] = connection.read_message(h(request["message2"])).hex()
else:
    result["payload"] = connection.read_message(h(request["message1"])).hex()
    result["remote_static"] = connection.noise_protocol.handshake_state.rs.public_bytes.hex()
    result["message2"] = connection.write_message(b"").hex()

result["handshake_finished"] = connection.handshake_finished
if connection.handshake_finished:
    if "send" in request:
        result["sent"] = connection.encrypt(h(request["send"])).hex()
    if "receive" in request:
        result["received"] = connection.decrypt(h(request["receive"])).hex()
json.dump(result, sys.stdout)
