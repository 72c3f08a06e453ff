"""Channel queries through the SDK: channel_info, channels_info, users_info."""

import unittest

import pusher

from harness import HeraldTestCase, unique, wait_until


class ChannelInfoTest(HeraldTestCase):
    def presence_member(self, channel, user_id, user_info=None):
        socket = self.socket()
        data = {"user_id": user_id}
        if user_info is not None:
            data["user_info"] = user_info
        auth = self.sdk.authenticate(channel, socket.socket_id, data)
        socket.subscribe(channel, auth["auth"], auth["channel_data"])
        return socket

    def test_channel_info_of_an_occupied_and_an_empty_channel(self):
        channel = unique("py-info")
        self.subscribed(channel)
        self.subscribed(channel)
        self.assertEqual(
            self.sdk.channel_info(channel, ["subscription_count"]),
            {"occupied": True, "subscription_count": 2},
        )
        self.assertEqual(self.sdk.channel_info(channel), {"occupied": True})
        self.assertEqual(self.sdk.channel_info(unique("py-nobody")), {"occupied": False})

    def test_channel_info_follows_unsubscribes(self):
        channel = unique("py-leave")
        socket = self.subscribed(channel)
        self.assertTrue(self.sdk.channel_info(channel)["occupied"])
        socket.close()
        wait_until(lambda: not self.sdk.channel_info(channel)["occupied"], label="the channel to be vacated")

    def test_channel_info_of_a_presence_channel_counts_users_and_sockets(self):
        channel = unique("presence-py-info")
        self.presence_member(channel, "alice")
        self.presence_member(channel, "alice")
        self.presence_member(channel, "bob")
        self.assertEqual(
            self.sdk.channel_info(channel, ["user_count", "subscription_count"]),
            {"occupied": True, "user_count": 2, "subscription_count": 3},
        )

    def test_channels_info_filters_by_prefix(self):
        prefix = unique("py-list")
        a, b = prefix + "-a", prefix + "-b"
        self.subscribed(a)
        self.subscribed(b)
        self.subscribed(unique("py-elsewhere"))
        self.assertEqual(self.sdk.channels_info(prefix), {"channels": {a: {}, b: {}}})
        self.assertEqual(
            self.sdk.channels_info(prefix, ["subscription_count"]),
            {"channels": {a: {"subscription_count": 1}, b: {"subscription_count": 1}}},
        )
        listed = self.sdk.channels_info()["channels"]
        self.assertIn(a, listed)
        self.assertIn(b, listed)

    def test_channels_info_user_count_on_presence_channels(self):
        prefix = unique("presence-py-list")
        first, second = prefix + "-1", prefix + "-2"
        self.presence_member(first, "alice")
        self.presence_member(first, "bob")
        self.presence_member(first, "bob")
        self.presence_member(second, "carol")
        self.assertEqual(
            self.sdk.channels_info(prefix, ["user_count"]),
            {"channels": {first: {"user_count": 2}, second: {"user_count": 1}}},
        )

    def test_channels_info_user_count_without_a_presence_prefix_is_refused(self):
        # The Pusher HTTP API allows info=user_count only with filter_by_prefix=presence-.
        with self.assertRaises(pusher.errors.PusherBadRequest):
            self.sdk.channels_info(None, ["user_count"])
        with self.assertRaises(pusher.errors.PusherBadRequest):
            self.sdk.channels_info("private-", ["user_count"])

    def test_users_info_lists_each_user_once(self):
        channel = unique("presence-py-users")
        self.presence_member(channel, "alice", {"name": "Alice"})
        self.presence_member(channel, "alice", {"name": "Alice"})
        self.presence_member(channel, 42)
        users = self.sdk.users_info(channel)["users"]
        # Numeric ids become strings.
        self.assertEqual(sorted(users, key=lambda u: u["id"]), [{"id": "42"}, {"id": "alice"}])

    def test_users_info_of_a_non_presence_channel_is_refused(self):
        with self.assertRaises(pusher.errors.PusherBadRequest):
            self.sdk.users_info(unique("py-not-presence"))


if __name__ == "__main__":
    unittest.main()
