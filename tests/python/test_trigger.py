"""Publishing through the SDK (trigger, trigger_batch, info) and receiving on real sockets."""

import json
import unittest

from harness import HeraldTestCase, signed_post, unique


class TriggerTest(HeraldTestCase):
    def test_trigger_to_one_channel_reaches_the_subscriber(self):
        channel = unique("py-one")
        socket = self.subscribed(channel)
        response = self.sdk.trigger(channel, "greeting", {"text": "hello", "n": 1})
        self.assertEqual(response, {})
        frame = socket.expect("greeting", channel)
        # Server events carry `data` as the JSON string the SDK sent.
        self.assertIsInstance(frame["data"], str)
        self.assertEqual(json.loads(frame["data"]), {"text": "hello", "n": 1})

    def test_string_and_unicode_data_are_relayed_verbatim(self):
        channel = unique("py-text")
        socket = self.subscribed(channel)
        self.sdk.trigger(channel, "plain", "just text, not JSON")
        self.assertEqual(socket.expect("plain", channel)["data"], "just text, not JSON")
        self.sdk.trigger(channel, "unicode", {"text": "h\u00e9llo \u2603 \U0001f600"})
        self.assertEqual(json.loads(socket.expect("unicode", channel)["data"]), {"text": "h\u00e9llo \u2603 \U0001f600"})

    def test_trigger_to_several_channels_reaches_each_subscriber(self):
        channels = [unique("py-multi-a"), unique("py-multi-b"), unique("py-multi-c")]
        first = self.subscribed(channels[0])
        second = self.subscribed(channels[1])
        # One socket on two of the channels gets the event once per channel.
        self.subscribed(channels[2], socket=second)
        response = self.sdk.trigger(channels, "fanout", {"to": "all"})
        self.assertEqual(response, {})
        self.assertEqual(json.loads(first.expect("fanout", channels[0])["data"]), {"to": "all"})
        self.assertEqual(json.loads(second.expect("fanout", channels[1])["data"]), {"to": "all"})
        self.assertEqual(json.loads(second.expect("fanout", channels[2])["data"]), {"to": "all"})
        self.assertEqual(first.frames("fanout"), [])

    def test_trigger_with_info_returns_subscription_and_user_counts(self):
        # pusher 3.3.4's `trigger()` has no `info` argument (an SDK limit), so the request body
        # is built here and signed by the SDK's own Request class.
        public = unique("py-info")
        presence = unique("presence-py-info")
        self.subscribed(public)
        self.subscribed(public)
        self.subscribed(presence)
        response = signed_post(
            self.sdk,
            "/events",
            {"name": "e", "data": "{}", "channels": [public], "info": "subscription_count"},
        )
        self.assertEqual(response, {"channels": {public: {"subscription_count": 2}}})
        response = signed_post(
            self.sdk,
            "/events",
            {"name": "e", "data": "{}", "channels": [presence], "info": "subscription_count,user_count"},
        )
        self.assertEqual(response, {"channels": {presence: {"subscription_count": 1, "user_count": 1}}})

    def test_trigger_batch_delivers_every_event_in_order(self):
        a, b = unique("py-batch-a"), unique("py-batch-b")
        socket_a = self.subscribed(a)
        socket_b = self.subscribed(b)
        response = self.sdk.trigger_batch(
            [
                {"channel": a, "name": "first", "data": {"i": 1}},
                {"channel": b, "name": "second", "data": "text"},
                {"channel": a, "name": "third", "data": {"i": 3}},
            ]
        )
        self.assertEqual(response, {})
        self.assertEqual(json.loads(socket_a.expect("first", a)["data"]), {"i": 1})
        self.assertEqual(json.loads(socket_a.expect("third", a)["data"]), {"i": 3})
        self.assertEqual(socket_a.frames(), [], "first arrived before third")
        self.assertEqual(socket_b.expect("second", b)["data"], "text")

    def test_trigger_batch_with_info(self):
        # The SDK passes the batch items through, so `info` per item works.
        public = unique("py-batch-info")
        presence = unique("presence-py-batch-info")
        self.subscribed(public)
        self.subscribed(presence)
        self.subscribed(presence)
        response = self.sdk.trigger_batch(
            [
                {"channel": public, "name": "e", "data": {}, "info": "subscription_count"},
                {"channel": public, "name": "e", "data": {}},
                {"channel": presence, "name": "e", "data": {}, "info": "user_count,subscription_count"},
            ]
        )
        # One answer per event, in order; {} for an event that asked for nothing.
        self.assertEqual(
            response,
            {"batch": [{"subscription_count": 1}, {}, {"subscription_count": 2, "user_count": 2}]},
        )

    def test_cache_channel_replays_the_last_event_to_a_new_subscriber(self):
        channel = unique("cache-py")
        first = self.socket()
        first.send_subscribe(channel)
        first.expect("pusher_internal:subscription_succeeded", channel)
        first.expect("pusher:cache_miss", channel)
        self.sdk.trigger(channel, "state", {"v": 1})
        self.sdk.trigger(channel, "state", {"v": 2})
        first.expect("state", channel)
        first.expect("state", channel)
        late = self.socket()
        late.send_subscribe(channel)
        late.expect("pusher_internal:subscription_succeeded", channel)
        self.assertEqual(json.loads(late.expect("state", channel)["data"]), {"v": 2})
        self.assertEqual(late.frames("pusher:cache_miss"), [])


if __name__ == "__main__":
    unittest.main()
