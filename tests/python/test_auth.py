"""Channel authorization signed by the SDK (`Pusher.authenticate`, the 3.3.x name of
authorize_channel), presented by a raw socket in `pusher:subscribe`."""

import json
import unittest

from harness import HeraldTestCase, unique


def data_of(frame):
    """A frame's data, decoded when it is a JSON string."""
    data = frame.get("data")
    return json.loads(data) if isinstance(data, str) else data


class ChannelAuthTest(HeraldTestCase):
    def expect_refused(self, socket, channel, auth, channel_data=None):
        socket.send_subscribe(channel, auth, channel_data)
        frame = socket.expect(("pusher_internal:subscription_succeeded", "pusher:subscription_error"), channel)
        self.assertEqual(frame["event"], "pusher:subscription_error", frame)
        return data_of(frame)

    def test_private_channel_auth_is_accepted(self):
        channel = unique("private-py")
        socket = self.socket()
        auth = self.sdk.authenticate(channel, socket.socket_id)
        self.assertEqual(set(auth), {"auth"})
        self.assertTrue(auth["auth"].startswith(self.server.sdk()._pusher_client.key + ":"))
        socket.subscribe(channel, auth["auth"])
        self.sdk.trigger(channel, "secret", {"ok": True})
        self.assertEqual(data_of(socket.expect("secret", channel)), {"ok": True})

    def test_private_channel_auth_signed_with_another_secret_is_refused(self):
        channel = unique("private-py-forged")
        socket = self.socket()
        forged = self.server.sdk(secret="not-the-secret").authenticate(channel, socket.socket_id)
        error = self.expect_refused(socket, channel, forged["auth"])
        self.assertEqual(error["type"], "AuthError")
        self.assertEqual(error["status"], 401)

    def test_private_channel_auth_for_another_socket_or_channel_is_refused(self):
        channel = unique("private-py-replay")
        owner = self.socket()
        thief = self.socket()
        stolen = self.sdk.authenticate(channel, owner.socket_id)["auth"]
        self.assertEqual(self.expect_refused(thief, channel, stolen)["status"], 401)
        other = self.sdk.authenticate(unique("private-py-other"), thief.socket_id)["auth"]
        self.assertEqual(self.expect_refused(thief, channel, other)["status"], 401)
        # And without auth at all.
        self.assertEqual(self.expect_refused(thief, channel, None)["type"], "AuthError")

    def test_presence_channel_auth_is_accepted_with_members(self):
        channel = unique("presence-py")
        alice = self.socket()
        auth = self.sdk.authenticate(channel, alice.socket_id, {"user_id": "alice", "user_info": {"name": "Alice"}})
        self.assertEqual(set(auth), {"auth", "channel_data"})
        joined = alice.subscribe(channel, auth["auth"], auth["channel_data"])
        presence = data_of(joined)["presence"]
        self.assertEqual(presence, {"ids": ["alice"], "hash": {"alice": {"name": "Alice"}}, "count": 1})

        bob = self.socket()
        # A numeric user id, as Laravel apps send it: the server lists it as a string.
        auth = self.sdk.authenticate(channel, bob.socket_id, {"user_id": 7, "user_info": {"name": "Bob"}})
        presence = data_of(bob.subscribe(channel, auth["auth"], auth["channel_data"]))["presence"]
        self.assertEqual(sorted(presence["ids"]), ["7", "alice"])
        self.assertEqual(presence["hash"], {"alice": {"name": "Alice"}, "7": {"name": "Bob"}})
        self.assertEqual(presence["count"], 2)
        added = data_of(alice.expect("pusher_internal:member_added", channel))
        self.assertEqual(added, {"user_id": "7", "user_info": {"name": "Bob"}})

        bob.close()
        removed = data_of(alice.expect("pusher_internal:member_removed", channel))
        self.assertEqual(removed, {"user_id": "7"})

    def test_presence_channel_data_altered_after_signing_is_refused(self):
        channel = unique("presence-py-tampered")
        socket = self.socket()
        auth = self.sdk.authenticate(channel, socket.socket_id, {"user_id": "mallory"})
        tampered = auth["channel_data"].replace("mallory", "admin")
        self.assertEqual(self.expect_refused(socket, channel, auth["auth"], tampered)["status"], 401)

    def test_client_events_on_a_channel_authorised_by_the_sdk(self):
        channel = unique("private-py-client")
        sender = self.subscribed(channel)
        receiver = self.subscribed(channel)
        sender.ws.send(json.dumps({"event": "client-typing", "channel": channel, "data": {"who": "sender"}}))
        got = receiver.expect("client-typing", channel)
        self.assertEqual(data_of(got), {"who": "sender"})
        # Never echoed to the sender: a later server event arrives, the client event did not.
        self.barrier(sender, channel)
        self.assertEqual(sender.frames("client-typing"), [])


if __name__ == "__main__":
    unittest.main()
