"""The errors the SDK surfaces: its own client-side checks, and herald's statuses mapped to
pusher.errors (400 PusherBadRequest, 401 PusherBadAuth, 403 PusherForbidden, anything else
PusherBadStatus with the status first in the message)."""

import json
import unittest

from pusher.errors import PusherBadAuth, PusherBadRequest, PusherBadStatus, PusherForbidden

from harness import APPS, HeraldTestCase, signed_post, unique

DATA_LIMIT = 10240  # [apps.limits] max_event_data_bytes, default


class ErrorTest(HeraldTestCase):
    def assertStatus(self, raised, status):
        message = str(raised.exception)
        self.assertTrue(message.startswith("%d: " % status), message)
        # Herald's error bodies are JSON with an `error` field.
        self.assertIn("error", json.loads(message[len("%d: " % status):]))

    def test_wrong_secret_is_401_bad_auth(self):
        forger = self.server.sdk(secret="definitely-wrong")
        with self.assertRaises(PusherBadAuth):
            forger.trigger(unique("py-err"), "e", {})
        with self.assertRaises(PusherBadAuth):
            forger.channels_info()
        with self.assertRaises(PusherBadAuth):
            forger.terminate_user_connections("someone")

    def test_key_of_another_app_is_401(self):
        mixed = self.server.sdk(dict(APPS["main"], key=APPS["other"]["key"]))
        with self.assertRaises(PusherBadAuth):
            mixed.trigger(unique("py-err"), "e", {})

    def test_unknown_app_is_404(self):
        unknown = self.server.sdk(dict(APPS["main"], id="999999"))
        with self.assertRaises(PusherBadStatus) as raised:
            unknown.trigger(unique("py-err"), "e", {})
        self.assertStatus(raised, 404)

    def test_sdk_refuses_a_non_numeric_app_id(self):
        with self.assertRaises(ValueError):
            self.server.sdk(dict(APPS["main"], id="main-app"))

    def test_disabled_app_is_403_forbidden(self):
        with self.assertRaises(PusherForbidden):
            self.server.sdk("disabled").trigger(unique("py-err"), "e", {})

    def test_invalid_channel_names_are_refused_by_the_sdk(self):
        for name in ["bad name!", "x" * 201, "caf\u00e9", "#server-to-user-", ""]:
            with self.subTest(name=name), self.assertRaises(ValueError):
                self.sdk.trigger(name, "e", {})
        with self.assertRaises(ValueError):
            self.sdk.channel_info("bad name!")

    def test_channel_names_the_sdk_lets_through_but_herald_refuses_are_400(self):
        # A prefix alone names no channel (docs/protocol.md); the SDK's regex allows it.
        for name in ["private-", "presence-", "cache-"]:
            with self.subTest(name=name), self.assertRaises(PusherBadRequest):
                self.sdk.trigger(name, "e", {})

    def test_event_data_over_the_limit_is_413(self):
        channel = unique("py-size")
        self.assertEqual(self.sdk.trigger(channel, "big", "x" * DATA_LIMIT), {})
        with self.assertRaises(PusherBadStatus) as raised:
            self.sdk.trigger(channel, "big", "x" * (DATA_LIMIT + 1))
        self.assertStatus(raised, 413)
        # The limit is in UTF-8 bytes: 5121 two-byte characters are 10242 bytes.
        with self.assertRaises(PusherBadStatus) as raised:
            self.sdk.trigger(channel, "big", "\u00e9" * (DATA_LIMIT // 2 + 1))
        self.assertStatus(raised, 413)

    def test_sdk_own_data_limits(self):
        # SDK limits, not the server's: trigger refuses data whose sys.getsizeof is over 30720,
        # trigger_batch data whose sys.getsizeof is over 10240 (which, with CPython's ~49 bytes
        # of object header, is *below* herald's 10240-byte limit).
        with self.assertRaises(ValueError):
            self.sdk.trigger(unique("py-size"), "big", "x" * 31000)
        with self.assertRaises(ValueError):
            self.sdk.trigger_batch([{"channel": unique("py-size"), "name": "big", "data": "x" * DATA_LIMIT}])

    def test_batch_event_data_over_the_limit_is_413(self):
        # already_encoded=True skips the SDK's own (stricter) check, so the server decides.
        channel = unique("py-size-batch")
        ok = self.sdk.trigger_batch([{"channel": channel, "name": "big", "data": "x" * DATA_LIMIT}], already_encoded=True)
        self.assertEqual(ok, {})
        with self.assertRaises(PusherBadStatus) as raised:
            self.sdk.trigger_batch(
                [{"channel": channel, "name": "big", "data": "x" * (DATA_LIMIT + 1)}], already_encoded=True
            )
        self.assertStatus(raised, 413)

    def test_more_than_10_events_in_a_batch_is_400(self):
        batch = [{"channel": unique("py-batch"), "name": "e", "data": {"i": i}} for i in range(11)]
        with self.assertRaises(PusherBadRequest):
            self.sdk.trigger_batch(batch)

    def test_channel_count_limits(self):
        channels = ["py-many-%d" % i for i in range(101)]
        # The SDK refuses more than 100 channels itself...
        with self.assertRaises(ValueError):
            self.sdk.trigger(channels, "e", {})
        # ...and herald refuses them too when the request is built by hand.
        with self.assertRaises(PusherBadRequest):
            signed_post(self.sdk, "/events", {"name": "e", "data": "{}", "channels": channels})
        self.assertEqual(self.sdk.trigger(channels[:100], "e", {}), {})

    def test_event_name_limits(self):
        with self.assertRaises(ValueError):
            self.sdk.trigger(unique("py-name"), "e" * 201, {})
        self.assertEqual(self.sdk.trigger(unique("py-name"), "e" * 200, {}), {})
        with self.assertRaises(PusherBadRequest):
            signed_post(self.sdk, "/events", {"name": "e" * 201, "data": "{}", "channels": ["py-name"]})

    def test_malformed_bodies_are_400(self):
        with self.assertRaises(PusherBadRequest):
            signed_post(self.sdk, "/events", {"name": "e", "channels": ["a"]})  # no data
        with self.assertRaises(PusherBadRequest):
            signed_post(self.sdk, "/events", {"name": "e", "data": "{}", "channels": ["a"], "socket_id": "nope"})


if __name__ == "__main__":
    unittest.main()
