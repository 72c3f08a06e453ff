"""User sign-in signed by `Pusher.authenticate_user`, `send_to_user` and
`terminate_user_connections`."""

import json
import unittest

from harness import HeraldTestCase, unique


def data_of(frame):
    data = frame.get("data")
    return json.loads(data) if isinstance(data, str) else data


class UserTest(HeraldTestCase):
    def signed_in(self, user_data, subscribe=True):
        """A socket signed in as `user_data`; subscribed to its #server-to-user- channel as
        pusher-js does after a sign-in (with an empty auth)."""
        socket = self.socket()
        signin = self.sdk.authenticate_user(socket.socket_id, user_data)
        self.assertEqual(set(signin), {"auth", "user_data"})
        socket.send("pusher:signin", signin)
        success = socket.expect(("pusher:signin_success", "pusher:error"))
        self.assertEqual(success["event"], "pusher:signin_success", success)
        self.assertEqual(json.loads(data_of(success)["user_data"]), user_data)
        if subscribe:
            socket.subscribe("#server-to-user-%s" % user_data["id"], auth="")
        return socket

    def test_signin_is_accepted(self):
        self.signed_in({"id": unique("user"), "name": "Ada", "watchlist": []}, subscribe=False)

    def test_send_to_user_reaches_every_socket_of_that_user_only(self):
        user = unique("user")
        phone = self.signed_in({"id": user, "name": "Phone"})
        laptop = self.signed_in({"id": user, "name": "Laptop"})
        stranger_id = unique("stranger")
        stranger = self.signed_in({"id": stranger_id})

        self.assertEqual(self.sdk.send_to_user(user, "notification", {"text": "you have mail"}), {})
        channel = "#server-to-user-%s" % user
        self.assertEqual(data_of(phone.expect("notification", channel)), {"text": "you have mail"})
        self.assertEqual(data_of(laptop.expect("notification", channel)), {"text": "you have mail"})

        # Barrier: an event to the stranger's own user arrives after anything sent before it.
        self.sdk.send_to_user(stranger_id, "done", {})
        stranger.expect("done", "#server-to-user-%s" % stranger_id)
        self.assertEqual(stranger.frames("notification"), [])

    def test_server_to_user_channel_of_another_user_is_refused(self):
        alice = self.signed_in({"id": unique("alice")}, subscribe=False)
        alice.send_subscribe("#server-to-user-%s" % unique("bob"), "")
        error = alice.expect("pusher:subscription_error")
        self.assertEqual(data_of(error)["status"], 403)

    def test_terminate_user_connections_closes_the_users_sockets_with_4009(self):
        user = unique("terminated")
        first = self.signed_in({"id": user})
        second = self.signed_in({"id": user})
        bystander_id = unique("bystander")
        bystander = self.signed_in({"id": bystander_id})

        self.assertEqual(self.sdk.terminate_user_connections(user), {})
        self.assertEqual(first.closed()[0], 4009)
        self.assertEqual(second.closed()[0], 4009)

        # The bystander is untouched.
        self.sdk.send_to_user(bystander_id, "still-there", {"ok": True})
        self.assertEqual(data_of(bystander.expect("still-there", "#server-to-user-%s" % bystander_id)), {"ok": True})

    def test_signin_signed_with_another_secret_closes_with_4009(self):
        socket = self.socket()
        forged = self.server.sdk(secret="not-the-secret").authenticate_user(socket.socket_id, {"id": "mallory"})
        socket.send("pusher:signin", forged)
        self.assertEqual(socket.closed()[0], 4009)
        self.assertEqual(socket.frames("pusher:signin_success"), [])

    def test_signin_for_another_socket_closes_with_4009(self):
        owner = self.socket()
        thief = self.socket()
        thief.send("pusher:signin", self.sdk.authenticate_user(owner.socket_id, {"id": "owner"}))
        self.assertEqual(thief.closed()[0], 4009)


if __name__ == "__main__":
    unittest.main()
