"""`socket_id` exclusion: the socket that caused an event does not get it back."""

import json
import unittest

from harness import HeraldTestCase, unique


class ExclusionTest(HeraldTestCase):
    def test_trigger_with_socket_id_skips_that_socket_only(self):
        channel = unique("py-exclude")
        excluded = self.subscribed(channel)
        other = self.subscribed(channel)
        self.assertEqual(self.sdk.trigger(channel, "update", {"v": 1}, socket_id=excluded.socket_id), {})
        self.assertEqual(json.loads(other.expect("update", channel)["data"]), {"v": 1})
        # Barrier: a later event without exclusion reaches the excluded socket, the first did not.
        self.barrier(excluded, channel)
        self.assertEqual(excluded.frames("update"), [])

    def test_exclusion_applies_on_every_channel_of_a_multi_channel_trigger(self):
        a, b = unique("py-exclude-a"), unique("py-exclude-b")
        excluded = self.subscribed(a)
        self.subscribed(b, socket=excluded)
        other = self.subscribed(b)
        self.sdk.trigger([a, b], "update", {"v": 2}, socket_id=excluded.socket_id)
        other.expect("update", b)
        self.barrier(excluded, a)
        self.barrier(excluded, b)
        self.assertEqual(excluded.frames("update"), [])

    def test_trigger_batch_item_with_socket_id(self):
        channel = unique("py-exclude-batch")
        excluded = self.subscribed(channel)
        other = self.subscribed(channel)
        self.sdk.trigger_batch(
            [
                {"channel": channel, "name": "skipped", "data": {}, "socket_id": excluded.socket_id},
                {"channel": channel, "name": "delivered", "data": {}},
            ]
        )
        # Both reach `other`; `delivered` comes after `skipped`, so it doubles as the barrier.
        other.expect("skipped", channel)
        other.expect("delivered", channel)
        excluded.expect("delivered", channel)
        self.assertEqual(excluded.frames("skipped"), [])

    def test_socket_id_of_another_app_or_unknown_excludes_nobody(self):
        channel = unique("py-exclude-none")
        socket = self.subscribed(channel)
        self.sdk.trigger(channel, "update", {}, socket_id="999999.999999")
        socket.expect("update", channel)

    def test_malformed_socket_id_is_refused_by_the_sdk(self):
        with self.assertRaises(ValueError):
            self.sdk.trigger(unique("py-exclude-bad"), "e", {}, socket_id="not-a-socket-id")


if __name__ == "__main__":
    unittest.main()
