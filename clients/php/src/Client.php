<?php

declare(strict_types=1);

namespace Herald;

use CurlHandle;
use InvalidArgumentException;
use JsonException;
use LogicException;
use UnexpectedValueException;

/**
 * Sends signed requests to Herald's HTTP API: domain events (`POST /apps/{id}/domain-events`),
 * plain Pusher triggers (`POST /apps/{id}/events`), the audit trail and any other signed GET.
 *
 * Requests are signed like the Pusher HTTP API (auth_version 1.0) with the app's key and secret;
 * the app must be Herald's notification app to send domain events. Every method throws
 * {@see HeraldException} when Herald refuses the request and {@see NetworkException} when no
 * answer arrives; arguments that could never be sent throw \InvalidArgumentException before any
 * request is made.
 */
final class Client
{
    public const VERSION = '0.1.0';

    /** Statuses worth sending the same request again for, later (with the same event ids). */
    public const RETRYABLE_STATUSES = [408, 429, 502, 503, 504];

    private const JSON_FLAGS = JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE;

    /** `scheme://host[:port]`, without a trailing slash. */
    private readonly string $baseUrl;

    private ?CurlHandle $curl = null;

    private ?int $lastStatus = null;

    /**
     * @param string $baseUrl where Herald listens: `http://127.0.0.1:6001`, `https://herald.example.org`
     *                        (no path: requests are signed for `/apps/{id}/…` as Herald sees them)
     * @param string $appId   the app id (`PUSHER_APP_ID`)
     * @param string $key     the app key (`PUSHER_APP_KEY`)
     * @param string $secret  the app secret (`PUSHER_APP_SECRET`), never sent, only signs
     * @param float  $timeout seconds a request may take in all, connecting included
     */
    public function __construct(
        string $baseUrl,
        private readonly string $appId,
        private readonly string $key,
        #[\SensitiveParameter] private readonly string $secret,
        private readonly float $timeout = 10.0,
    ) {
        if (!extension_loaded('curl')) {
            throw new LogicException('Herald\Client needs the PHP curl extension (Debian: apt-get install php-curl)');
        }
        $this->baseUrl = self::normalizeBaseUrl($baseUrl);
        if ($appId === '' || $key === '' || $secret === '') {
            throw new InvalidArgumentException('the app id, key and secret must not be empty');
        }
        if (!is_finite($timeout) || $timeout <= 0) {
            throw new InvalidArgumentException('the timeout must be a positive number of seconds');
        }
    }

    /**
     * A client from Laravel's `config('broadcasting.connections.pusher')`: `app_id`, `key`,
     * `secret` and `options.host`, `options.port`, `options.scheme` (or `options.useTLS`), as
     * filled from `PUSHER_APP_ID`, `PUSHER_APP_KEY`, `PUSHER_APP_SECRET`, `PUSHER_HOST`,
     * `PUSHER_PORT` and `PUSHER_SCHEME`.
     *
     * @param array<string, mixed> $connection
     */
    public static function fromLaravelConfig(array $connection, float $timeout = 10.0): self
    {
        $options = is_array($connection['options'] ?? null) ? $connection['options'] : [];
        $host = $options['host'] ?? null;
        if (!is_string($host) || trim($host) === '') {
            throw new InvalidArgumentException('broadcasting.connections.pusher.options.host is empty: set PUSHER_HOST to Herald\'s host');
        }
        $scheme = $options['scheme'] ?? null;
        if (!is_string($scheme) || $scheme === '') {
            $scheme = ($options['useTLS'] ?? $options['encrypted'] ?? true) ? 'https' : 'http';
        }
        $host = trim($host);
        if (str_contains($host, ':') && !str_starts_with($host, '[')) {
            $host = "[{$host}]";
        }
        $port = $options['port'] ?? null;
        $url = strtolower($scheme) . '://' . $host;
        if ($port !== null && $port !== '') {
            if (!is_int($port) && !(is_string($port) && preg_match('/\A\d+\z/', $port) === 1)) {
                throw new InvalidArgumentException('broadcasting.connections.pusher.options.port must be a number (PUSHER_PORT)');
            }
            $url .= ':' . $port;
        }
        foreach (['app_id' => 'PUSHER_APP_ID', 'key' => 'PUSHER_APP_KEY', 'secret' => 'PUSHER_APP_SECRET'] as $name => $env) {
            if (!is_scalar($connection[$name] ?? null) || (string) $connection[$name] === '') {
                throw new InvalidArgumentException("broadcasting.connections.pusher.{$name} is empty: set {$env}");
            }
        }

        return new self($url, (string) $connection['app_id'], (string) $connection['key'], (string) $connection['secret'], $timeout);
    }

    /** The base URL requests go to (`scheme://host[:port]`). */
    public function baseUrl(): string
    {
        return $this->baseUrl;
    }

    /** The app id requests are signed for. */
    public function appId(): string
    {
        return $this->appId;
    }

    /**
     * The HTTP status of the last answer (202 for accepted domain events, 200 for a trigger, the
     * error's status after a HeraldException); null before the first request and after a
     * NetworkException.
     */
    public function lastStatus(): ?int
    {
        return $this->lastStatus;
    }

    /**
     * Sends one domain event: `['id' => …, 'type' => …, 'data' => [...]]` (and optionally
     * `occurred_at`). Always give an `id`: it makes retries safe.
     *
     * @param array<string, mixed> $event
     *
     * @throws HeraldException  Herald refused it (422: {@see HeraldException::getField()} names the field)
     * @throws NetworkException no answer
     */
    public function sendDomainEvent(array $event): DomainEventOutcome
    {
        return $this->sendDomainEvents([$event])[0];
    }

    /**
     * Sends a batch of 1 to 100 domain events in one request, all or nothing: when one is
     * invalid Herald stores none of them and answers 422 naming every field at fault.
     *
     * @param list<array<string, mixed>> $events
     *
     * @return list<DomainEventOutcome> one outcome per event, in the order sent
     *
     * @throws HeraldException  Herald refused the batch
     * @throws NetworkException no answer
     */
    public function sendDomainEvents(array $events): array
    {
        if ($events === [] || !array_is_list($events)) {
            throw new InvalidArgumentException('sendDomainEvents() takes a non-empty list of events');
        }
        foreach ($events as $index => $event) {
            if (!is_array($event) || $event === [] || array_is_list($event)) {
                throw new InvalidArgumentException("event {$index} must be an array with the keys id, type and data");
            }
        }
        $body = self::encode(['events' => $events], 'the events');
        $answer = $this->request('POST', '/domain-events', [], $body);
        $outcomes = $answer['events'] ?? null;
        if (!is_array($outcomes) || !array_is_list($outcomes) || count($outcomes) !== count($events)) {
            throw new HeraldException(
                sprintf('Herald answered POST %s without one outcome per event', $this->path('/domain-events')),
                null,
                $answer,
            );
        }
        try {
            return array_map([DomainEventOutcome::class, 'fromArray'], $outcomes);
        } catch (UnexpectedValueException $error) {
            throw new HeraldException(
                sprintf('Herald answered POST %s with an unreadable outcome: %s', $this->path('/domain-events'), $error->getMessage()),
                null,
                $answer,
                false,
                null,
                $error,
            );
        }
    }

    /**
     * Publishes a plain Pusher event (`POST /apps/{id}/events`) on one or more channels (at most
     * 100), as `Pusher::trigger()` does. A string `$data` is sent as it is (already JSON, or plain
     * text); anything else is JSON-encoded. `$socketId` leaves out that connection (the sender).
     *
     * @param string|list<string> $channels
     *
     * @return array<string, mixed> Herald's answer (`[]` unless it reports channel attributes)
     *
     * @throws HeraldException  Herald refused it (400: {@see HeraldException::getField()} names the field)
     * @throws NetworkException no answer
     */
    public function trigger(string|array $channels, string $event, mixed $data, ?string $socketId = null): array
    {
        $channels = is_string($channels) ? [$channels] : $channels;
        if ($channels === [] || !array_is_list($channels)) {
            throw new InvalidArgumentException('trigger() needs a channel name or a non-empty list of them');
        }
        foreach ($channels as $channel) {
            if (!is_string($channel) || $channel === '') {
                throw new InvalidArgumentException('channel names must be non-empty strings');
            }
        }
        if ($event === '') {
            throw new InvalidArgumentException('the event name must not be empty');
        }
        if ($socketId !== null && preg_match('/\A\d+\.\d+\z/', $socketId) !== 1) {
            throw new InvalidArgumentException("invalid socket id \"{$socketId}\" (expected digits.digits)");
        }
        $payload = [
            'name' => $event,
            'data' => is_string($data) ? $data : self::encode($data, 'the event data'),
            'channels' => $channels,
        ];
        if ($socketId !== null) {
            $payload['socket_id'] = $socketId;
        }

        return $this->request('POST', '/events', [], self::encode($payload, 'the trigger'));
    }

    /**
     * The audit trail of domain events (`GET /apps/{id}/audit`), newest first. Filters:
     * `event_id`, `type`, `status` (received, routed, ignored, suppressed, duplicate, delivered,
     * attempt_failed, dead_lettered, replayed), `since` (`15m`, `1h`, an RFC 3339 time), `limit`.
     *
     * @param array<string, scalar> $filters
     *
     * @return list<array<string, mixed>> entries `{seq, at, event_id, type, broadcast_id, status, detail}`
     */
    public function audit(array $filters = []): array
    {
        $answer = $this->get('/audit', $filters);
        $entries = $answer['entries'] ?? null;
        if (!is_array($entries) || !array_is_list($entries)) {
            throw new HeraldException(sprintf('Herald answered GET %s without entries', $this->path('/audit')), null, $answer);
        }

        return $entries;
    }

    /**
     * Any signed GET below `/apps/{id}`: `get('/channels', ['filter_by_prefix' => 'presence-'])`,
     * `get('/channels/cache-news', ['info' => 'cache'])`. The path is sent as given (channel names
     * need no escaping).
     *
     * @param array<string, scalar> $params query parameters, signed with the request
     *
     * @return array<string, mixed> the decoded JSON answer
     */
    public function get(string $path, array $params = []): array
    {
        return $this->request('GET', $path, $params, null);
    }

    /** @return array<string, mixed> */
    public function __debugInfo(): array
    {
        return ['baseUrl' => $this->baseUrl, 'appId' => $this->appId, 'key' => $this->key, 'secret' => '***', 'timeout' => $this->timeout];
    }

    /**
     * The query of a signed request: `$params`, `auth_key`, `auth_timestamp`, `auth_version`,
     * `body_md5` (when there is a body) and `auth_signature`, the lower-case hex HMAC-SHA256 of
     * `METHOD\nPATH\nk=v&k=v…` (every other parameter, keys lower-cased and sorted, values not
     * escaped) under the app secret.
     *
     * @param array<string, string> $params
     *
     * @return array<string, string>
     */
    private function sign(string $method, string $path, array $params, ?string $body, int $timestamp): array
    {
        $params['auth_key'] = $this->key;
        $params['auth_timestamp'] = (string) $timestamp;
        $params['auth_version'] = '1.0';
        if ($body !== null) {
            $params['body_md5'] = md5($body);
        }
        ksort($params, SORT_STRING);
        $pairs = [];
        foreach ($params as $name => $value) {
            $pairs[] = "{$name}={$value}";
        }
        $toSign = strtoupper($method) . "\n" . $path . "\n" . implode('&', $pairs);
        $params['auth_signature'] = hash_hmac('sha256', $toSign, $this->secret);

        return $params;
    }

    /**
     * Sends one signed request and returns the decoded JSON object of a 2xx answer.
     *
     * @param array<string, mixed> $params
     *
     * @return array<string, mixed>
     */
    private function request(string $method, string $relativePath, array $params, ?string $body): array
    {
        $path = $this->path($relativePath);
        $query = [];
        foreach ($params as $name => $value) {
            $name = strtolower((string) $name);
            if (str_starts_with($name, 'auth_') || $name === 'body_md5') {
                throw new InvalidArgumentException("the parameter {$name} is set by the client");
            }
            $query[$name] = match (true) {
                is_bool($value) => $value ? 'true' : 'false',
                is_scalar($value) => (string) $value,
                default => throw new InvalidArgumentException("the parameter {$name} must be a scalar"),
            };
        }
        $signed = $this->sign($method, $path, $query, $body, time());
        $url = $this->baseUrl . $path . '?' . http_build_query($signed, '', '&', PHP_QUERY_RFC3986);

        $this->lastStatus = null;
        $curl = $this->curl ??= $this->newHandle();
        curl_reset($curl);
        $headers = [];
        $options = [
            CURLOPT_URL => $url,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_TIMEOUT_MS => max(1, (int) round($this->timeout * 1000)),
            CURLOPT_CONNECTTIMEOUT_MS => max(1, (int) round($this->timeout * 1000)),
            CURLOPT_NOSIGNAL => true,
            CURLOPT_USERAGENT => 'herald-php/' . self::VERSION . ' PHP/' . PHP_VERSION,
            // An empty Expect: no 100-continue round trip before larger bodies.
            CURLOPT_HTTPHEADER => ['Accept: application/json', 'Content-Type: application/json', 'Expect:'],
            CURLOPT_HEADERFUNCTION => static function ($handle, string $line) use (&$headers): int {
                if (str_starts_with($line, 'HTTP/')) {
                    $headers = []; // a new response (after an interim 1xx): keep only the last one's
                } elseif (str_contains($line, ':')) {
                    [$name, $value] = explode(':', $line, 2);
                    $headers[strtolower(trim($name))] = trim($value);
                }

                return strlen($line);
            },
        ];
        if (defined('CURLOPT_PROTOCOLS_STR')) {
            $options[CURLOPT_PROTOCOLS_STR] = 'http,https';
        } else {
            $options[CURLOPT_PROTOCOLS] = CURLPROTO_HTTP | CURLPROTO_HTTPS;
        }
        if ($method === 'POST') {
            $options[CURLOPT_POST] = true;
            $options[CURLOPT_POSTFIELDS] = $body ?? '';
        } else {
            $options[CURLOPT_HTTPGET] = true;
        }
        curl_setopt_array($curl, $options);

        $raw = curl_exec($curl);
        if (!is_string($raw)) {
            $errno = curl_errno($curl);
            $target = "{$method} {$this->baseUrl}{$path}";
            throw new NetworkException(
                $errno === CURLE_OPERATION_TIMEDOUT
                    ? sprintf(
                        'Herald did not answer %s within %s s (curl error %d); the request may have arrived: retry with the same event ids',
                        $target,
                        self::seconds($this->timeout),
                        $errno,
                    )
                    : sprintf('Could not reach Herald: %s failed: %s (curl error %d)', $target, curl_error($curl), $errno),
                $errno,
            );
        }
        $status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        $this->lastStatus = $status;
        $decoded = null;
        if ($raw !== '') {
            try {
                $decoded = json_decode($raw, true, 512, JSON_THROW_ON_ERROR);
            } catch (JsonException) {
                $decoded = null;
            }
        }
        $json = is_array($decoded) && ($decoded === [] || !array_is_list($decoded)) ? $decoded : null;

        if ($status >= 200 && $status < 300) {
            if ($json === null) {
                throw new HeraldException(
                    sprintf('Herald answered %s %s with %d but no JSON object: %s', $method, $path, $status, self::excerpt($raw)),
                    $status,
                );
            }

            return $json;
        }

        throw $this->refusal($method, $path, $status, $json, $raw, $headers['retry-after'] ?? null);
    }

    /** @param array<string, mixed>|null $json */
    private function refusal(string $method, string $path, int $status, ?array $json, string $raw, ?string $retryAfter): HeraldException
    {
        $reason = is_string($json['error'] ?? null) ? $json['error'] : self::excerpt($raw);
        $errors = is_array($json['errors'] ?? null) ? count($json['errors']) : 0;
        if ($errors > 1) {
            $reason .= sprintf(' (and %d more: see getErrors())', $errors - 1);
        }
        if ($status >= 300 && $status < 400) {
            $reason = 'unexpected redirect' . (self::excerpt($raw) === '' ? '' : ': ' . self::excerpt($raw)) . ' (check the base URL, e.g. http or https)';
        }

        return new HeraldException(
            sprintf('Herald refused %s %s with %d%s', $method, $path, $status, $reason === '' ? '' : ": {$reason}"),
            $status,
            $json,
            in_array($status, self::RETRYABLE_STATUSES, true),
            $retryAfter !== null && preg_match('/\A\d+\z/', $retryAfter) === 1 ? (int) $retryAfter : null,
        );
    }

    private function path(string $relativePath): string
    {
        if ($relativePath !== '' && !str_starts_with($relativePath, '/')) {
            $relativePath = '/' . $relativePath;
        }

        return '/apps/' . rawurlencode($this->appId) . $relativePath;
    }

    private function newHandle(): CurlHandle
    {
        $curl = curl_init();
        if ($curl === false) {
            throw new NetworkException('curl_init() failed');
        }

        return $curl;
    }

    private static function normalizeBaseUrl(string $baseUrl): string
    {
        $parts = parse_url(trim($baseUrl));
        $scheme = is_array($parts) ? strtolower($parts['scheme'] ?? '') : '';
        if (!is_array($parts) || !in_array($scheme, ['http', 'https'], true) || ($parts['host'] ?? '') === '') {
            throw new InvalidArgumentException("the base URL must be http(s)://host[:port], not \"{$baseUrl}\"");
        }
        if (!in_array($parts['path'] ?? '', ['', '/'], true) || isset($parts['query']) || isset($parts['fragment']) || isset($parts['user'])) {
            throw new InvalidArgumentException(
                "the base URL must be http(s)://host[:port] without a path, query or credentials, not \"{$baseUrl}\" (Herald checks signatures against /apps/{id}/…)",
            );
        }
        $host = $parts['host'];

        return $scheme . '://' . $host . (isset($parts['port']) ? ':' . $parts['port'] : '');
    }

    private static function encode(mixed $value, string $what): string
    {
        try {
            return json_encode($value, self::JSON_FLAGS);
        } catch (JsonException $error) {
            throw new InvalidArgumentException("{$what} cannot be encoded as JSON: {$error->getMessage()}", 0, $error);
        }
    }

    private static function excerpt(string $raw): string
    {
        $text = trim(preg_replace('/\s+/', ' ', $raw) ?? '');

        return strlen($text) > 300 ? substr($text, 0, 300) . '…' : $text;
    }

    private static function seconds(float $seconds): string
    {
        return rtrim(rtrim(sprintf('%.3f', $seconds), '0'), '.');
    }
}
