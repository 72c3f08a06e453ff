"""End-to-end encrypted channels (`private-encrypted-`): the SDK encrypts with its
`encryption_master_key_base64`, herald relays the ciphertext untouched, the subscriber decrypts
with the shared secret the SDK's `authenticate` hands out."""

import base64
import hashlib
import json
import unittest

import nacl.secret

from harness import ENCRYPTION_MASTER_KEY_BASE64, HeraldTestCase, signed_post, unique

import pusher


class EncryptedChannelTest(HeraldTestCase):
    def subscribe_encrypted(self, channel):
        socket = self.socket()
        auth = self.sdk.authenticate(channel, socket.socket_id)
        self.assertEqual(set(auth), {"auth", "shared_secret"})
        socket.subscribe(channel, auth["auth"])
        # pusher 3.3.4 returns shared_secret as bytes (base64), not str: an SDK quirk that a
        # web framework must decode before putting it in the JSON answer.
        secret = auth["shared_secret"]
        if isinstance(secret, bytes):
            secret = secret.decode()
        return socket, base64.b64decode(secret)

    def decrypt(self, frame, shared_secret):
        envelope = json.loads(frame["data"])
        self.assertEqual(set(envelope), {"nonce", "ciphertext"})
        box = nacl.secret.SecretBox(shared_secret)
        plain = box.decrypt(base64.b64decode(envelope["ciphertext"]), base64.b64decode(envelope["nonce"]))
        return plain.decode("utf-8")

    def test_shared_secret_is_sha256_of_channel_and_master_key(self):
        channel = unique("private-encrypted-py-secret")
        _, secret = self.subscribe_encrypted(channel)
        expected = hashlib.sha256(channel.encode() + base64.b64decode(ENCRYPTION_MASTER_KEY_BASE64)).digest()
        self.assertEqual(secret, expected)

    def test_trigger_to_an_encrypted_channel_is_relayed_as_ciphertext(self):
        channel = unique("private-encrypted-py")
        socket, secret = self.subscribe_encrypted(channel)
        self.assertEqual(self.sdk.trigger(channel, "sealed", {"card": "4111"}), {})
        frame = socket.expect("sealed", channel)
        self.assertNotIn("4111", frame["data"])
        self.assertEqual(json.loads(self.decrypt(frame, secret)), {"card": "4111"})

    def test_trigger_batch_to_an_encrypted_channel(self):
        channel = unique("private-encrypted-py-batch")
        plain = unique("py-plain")
        socket, secret = self.subscribe_encrypted(channel)
        self.subscribed(plain, socket=socket)
        self.sdk.trigger_batch(
            [
                {"channel": channel, "name": "sealed", "data": "text \u00e9"},
                {"channel": plain, "name": "open", "data": {"x": 1}},
            ]
        )
        self.assertEqual(self.decrypt(socket.expect("sealed", channel), secret), "text \u00e9")
        self.assertEqual(json.loads(socket.expect("open", plain)["data"]), {"x": 1})

    def test_plaintext_to_an_encrypted_channel_is_refused_by_the_server(self):
        # The SDK always encrypts, so the plaintext request is built by hand (signed by the SDK).
        channel = unique("private-encrypted-py-plain")
        with self.assertRaises(pusher.errors.PusherBadRequest) as raised:
            signed_post(self.sdk, "/events", {"name": "e", "data": '{"card":"4111"}', "channels": [channel]})
        self.assertIn("data", str(raised.exception))

    def test_sdk_refuses_encrypted_channels_without_a_master_key_or_in_a_multi_channel_trigger(self):
        channel = unique("private-encrypted-py-sdk")
        without_key = self.server.sdk(encryption_master_key_base64=None)
        with self.assertRaises(ValueError):
            without_key.trigger(channel, "e", {})
        with self.assertRaises(ValueError):
            self.sdk.trigger([channel, unique("py-other")], "e", {})


if __name__ == "__main__":
    unittest.main()
