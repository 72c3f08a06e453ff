<?php

/**
 * Tests of the Herald PHP client against the real `herald` binary. No PHPUnit, no Composer:
 *
 *     php clients/php/tests/ClientTest.php [name filter]
 *
 * The binary is HERALD_BIN, else $HERALD_TARGET_DIR/debug/herald, else <repo>/target/debug/herald.
 * A temporary directory holds the config and the SQLite database; the server is started once
 * (`herald serve --port 0`, its port read from the banner) and stopped at the end, also when a
 * test or the runner fails. Prints one line per test and last `php: N passed, N failed`; exits 1
 * when a test failed. HERALD_DEBUG=1 prints the server's log at the end.
 */

declare(strict_types=1);

require __DIR__ . '/../src/Herald.php';

use Herald\Client;
use Herald\DomainEventOutcome;
use Herald\HeraldException;
use Herald\NetworkException;

error_reporting(E_ALL);

// libcurl honours these: requests to the test server on 127.0.0.1 must not go to a proxy.
foreach (['http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'] as $proxy) {
    putenv($proxy);
}
set_error_handler(static function (int $severity, string $message, string $file, int $line): bool {
    throw new ErrorException($message, 0, $severity, $file, $line);
});

// -------------------------------------------------------------------------------------------------
// Assertions

final class AssertionFailed extends Exception
{
}

function show(mixed $value): string
{
    if (is_object($value)) {
        return $value::class;
    }
    try {
        return json_encode($value, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION);
    } catch (JsonException) {
        return var_export($value, true);
    }
}

function ok(bool $condition, string $what): void
{
    if (!$condition) {
        throw new AssertionFailed($what);
    }
}

function same(mixed $expected, mixed $actual, string $what): void
{
    if ($expected !== $actual) {
        throw new AssertionFailed(sprintf("%s:\n      expected %s\n      got      %s", $what, show($expected), show($actual)));
    }
}

function contains(string $needle, string $haystack, string $what): void
{
    if (!str_contains($haystack, $needle)) {
        throw new AssertionFailed(sprintf('%s: %s does not contain %s', $what, show($haystack), show($needle)));
    }
}

/**
 * Runs `$action`, which must throw a `$class`; returns what it threw.
 *
 * @template T of Throwable
 *
 * @param class-string<T> $class
 *
 * @return T
 */
function throws(string $class, callable $action, string $what): Throwable
{
    try {
        $result = $action();
    } catch (Throwable $thrown) {
        if ($thrown instanceof $class) {
            return $thrown;
        }
        throw new AssertionFailed(sprintf("%s: expected %s, got %s: %s", $what, $class, $thrown::class, $thrown->getMessage()), 0, $thrown);
    }
    throw new AssertionFailed(sprintf('%s: expected %s, but it returned %s', $what, $class, show($result)));
}

/** Polls `$probe` until it returns something truthy (returned), at most `$seconds`. */
function waitFor(callable $probe, string $what, float $seconds = 10.0): mixed
{
    $deadline = microtime(true) + $seconds;
    $last = null;
    for (;;) {
        $last = $probe();
        if ($last) {
            return $last;
        }
        if (microtime(true) > $deadline) {
            throw new AssertionFailed(sprintf('timed out after %s s waiting for %s (last: %s)', $seconds, $what, show($last)));
        }
        usleep(50_000);
    }
}

/** @param list<DomainEventOutcome> $outcomes */
function statuses(array $outcomes): array
{
    return array_map(static fn (DomainEventOutcome $outcome): string => $outcome->status, $outcomes);
}

// -------------------------------------------------------------------------------------------------
// The server

final class HeraldServer
{
    /** The notification app: the first one declared (`[notifications] app_id` is left empty). */
    public const APP = ['id' => '424242', 'key' => 'php-key', 'secret' => 'php-secret'];
    /** A second app: it may trigger, but not send domain events. */
    public const OTHER_APP = ['id' => 'other-app', 'key' => 'other-key', 'secret' => 'other-secret'];
    /** One signed API request per second: the next ones are answered 429. */
    public const LIMITED_APP = ['id' => 'limited-app', 'key' => 'limited-key', 'secret' => 'limited-secret', 'max_api_requests_per_second' => 1];
    /** A disabled app: 403 for every API call. */
    public const DISABLED_APP = ['id' => 'disabled-app', 'key' => 'disabled-key', 'secret' => 'disabled-secret', 'enabled' => false];

    /** @var resource|null */
    private $process;

    private string $finalLogs = '';

    /** @var array{0: resource, 1: string}|null the process being started and its directory */
    private static ?array $starting = null;

    private function __construct(
        /** @var resource */
        $process,
        public readonly string $dir,
        public readonly int $port,
    ) {
        $this->process = $process;
    }

    /** The herald binary to test. */
    public static function binary(): string
    {
        $bin = getenv('HERALD_BIN');
        if (is_string($bin) && $bin !== '') {
            return str_starts_with($bin, '/') ? $bin : getcwd() . '/' . $bin;
        }
        $target = getenv('HERALD_TARGET_DIR');
        if (is_string($target) && $target !== '') {
            return rtrim($target, '/') . '/debug/herald';
        }

        return dirname(__DIR__, 3) . '/target/debug/herald';
    }

    /** Starts `herald serve` on a free port and waits (10 s at most) for its banner. */
    public static function start(): self
    {
        $bin = self::binary();
        if (!is_file($bin) || !is_executable($bin)) {
            throw new RuntimeException("herald binary not found at {$bin}: build it with `cargo build` at the repository root, or set HERALD_BIN");
        }
        $dir = sys_get_temp_dir() . '/herald-php-' . bin2hex(random_bytes(6));
        mkdir($dir, 0700);
        $config = "{$dir}/herald.toml";
        file_put_contents($config, self::configToml($dir));

        // The server reads its settings from the environment too: none of the caller's may leak in.
        $env = [];
        foreach (getenv() as $name => $value) {
            if (!preg_match('/\A(HERALD_|PUSHER_|BROADCAST_CONNECTION\z|DATABASE_URL\z|RUST_LOG\z)/', $name)) {
                $env[$name] = $value;
            }
        }
        $env['HERALD_LOG'] = 'warn';

        // stdout goes to a file, read for the banner: a pipe nobody reads once the banner is seen
        // would break (EPIPE) or fill up whatever the server prints after it.
        $process = proc_open(
            [$bin, 'serve', '--host', '127.0.0.1', '--port', '0', '--config', $config],
            [0 => ['file', '/dev/null', 'r'], 1 => ['file', "{$dir}/stdout.log", 'w'], 2 => ['file', "{$dir}/stderr.log", 'w']],
            $pipes,
            $dir,
            $env,
        );
        if (!is_resource($process)) {
            self::removeDir($dir);
            throw new RuntimeException("could not start {$bin}");
        }
        self::$starting = [$process, $dir];
        $deadline = microtime(true) + 10.0;
        try {
            for (;;) {
                $output = (string) file_get_contents("{$dir}/stdout.log");
                if (preg_match('/WebSocket\s+ws:\/\/127\.0\.0\.1:(\d+)\/app\//', $output, $match) === 1 && str_contains($output, 'Laravel Echo:')) {
                    $port = (int) $match[1];
                    break;
                }
                $status = proc_get_status($process);
                if (!$status['running']) {
                    throw new RuntimeException("herald exited before it was ready (exit code {$status['exitcode']}):\n{$output}" . self::readLog($dir));
                }
                if (microtime(true) > $deadline) {
                    throw new RuntimeException("herald printed no banner within 10 s:\n{$output}" . self::readLog($dir));
                }
                usleep(20_000);
            }
        } catch (Throwable $error) {
            self::$starting = null;
            self::kill($process);
            self::removeDir($dir);
            throw $error;
        }
        self::$starting = null;

        return new self($process, $dir, $port);
    }

    public function url(): string
    {
        return "http://127.0.0.1:{$this->port}";
    }

    /** A client for `$app` (the notification app by default). */
    public function client(array $app = self::APP, float $timeout = 5.0): Client
    {
        return new Client($this->url(), $app['id'], $app['key'], $app['secret'], $timeout);
    }

    /** What the server wrote to stderr (kept after stop()). */
    public function logs(): string
    {
        return $this->process === null ? $this->finalLogs : self::readLog($this->dir);
    }

    /** Stops the server (SIGTERM, SIGKILL after 5 s) and removes its directory. Idempotent. */
    public function stop(): void
    {
        if ($this->process !== null) {
            self::kill($this->process);
            $this->process = null;
            $this->finalLogs = self::readLog($this->dir);
            self::removeDir($this->dir);
        }
    }

    /** Kills a server still starting (the runner was interrupted while waiting for its banner). */
    public static function abortStart(): void
    {
        if (self::$starting !== null) {
            [$process, $dir] = self::$starting;
            self::$starting = null;
            self::kill($process);
            self::removeDir($dir);
        }
    }

    /** @param resource $process */
    private static function kill($process): void
    {
        $status = proc_get_status($process);
        if ($status['running']) {
            proc_terminate($process, 15);
            $deadline = microtime(true) + 5.0;
            while (proc_get_status($process)['running'] && microtime(true) < $deadline) {
                usleep(20_000);
            }
            if (proc_get_status($process)['running']) {
                proc_terminate($process, 9);
            }
        }
        proc_close($process);
    }

    private static function configToml(string $dir): string
    {
        $string = static fn (string $value): string => json_encode($value, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
        $lines = [
            '[server]',
            'host = "127.0.0.1"',
            'port = 0',
            'shutdown_grace_secs = 1',
            '',
            '[admin]',
            'port = 0',
            '',
            '[database]',
            'url = ' . $string("sqlite://{$dir}/herald.db"),
            '',
            '[auth]',
            'jwt_secret = "php-suite-jwt-secret"',
            '',
        ];
        foreach ([self::APP, self::OTHER_APP, self::LIMITED_APP, self::DISABLED_APP] as $app) {
            $lines[] = '[[apps]]';
            foreach ($app as $key => $value) {
                $lines[] = "{$key} = " . (is_string($value) ? $string($value) : var_export($value, true));
            }
            $lines[] = '';
        }

        return implode("\n", $lines);
    }

    private static function readLog(string $dir): string
    {
        $log = @file_get_contents("{$dir}/stderr.log");

        return is_string($log) && $log !== '' ? "\n--- herald stderr ---\n" . substr($log, -20000) : '';
    }

    private static function removeDir(string $dir): void
    {
        if (!is_dir($dir)) {
            return;
        }
        $entries = new RecursiveIteratorIterator(
            new RecursiveDirectoryIterator($dir, FilesystemIterator::SKIP_DOTS),
            RecursiveIteratorIterator::CHILD_FIRST,
        );
        foreach ($entries as $entry) {
            $entry->isDir() && !$entry->isLink() ? rmdir($entry->getPathname()) : unlink($entry->getPathname());
        }
        rmdir($dir);
    }
}

/** A TCP port on 127.0.0.1 with nothing listening on it. */
function closedPort(): int
{
    $socket = stream_socket_server('tcp://127.0.0.1:0');
    $port = (int) substr(strrchr(stream_socket_get_name($socket, false), ':'), 1);
    fclose($socket);

    return $port;
}

// -------------------------------------------------------------------------------------------------
// Events used by several tests (types and fields as docs/events.md lists them)

function largeDonation(string $id, int|string $amount = 2500): array
{
    return [
        'id' => $id,
        'type' => 'donation.large_received',
        'occurred_at' => '2026-11-27T10:00:00Z',
        'data' => [
            'donation_id' => 9001,
            'amount' => $amount,
            'currency' => 'eur',
            'campaign_id' => 3,
            'organization_id' => 7,
            'donor_name' => 'Ada Lovelace',
        ],
    ];
}

function securityAlert(string $id, string $severity = 'medium'): array
{
    return [
        'id' => $id,
        'type' => 'security.alert',
        'data' => ['alert_type' => 'login_anomaly', 'message' => 'Login from a new country', 'severity' => $severity],
    ];
}

// -------------------------------------------------------------------------------------------------
// Tests without a server

$offline = [];
$online = [];

$offline['signs like the Pusher HTTP API (auth_version 1.0 golden vector)'] = static function (): void {
    // The vector of crates/herald-protocol/src/sign.rs (from the Pusher protocol description).
    $client = new Client('http://127.0.0.1:1', '3', '278d425bdf160c739803', '7ad3773142a6692b25b8');
    $sign = new ReflectionMethod(Client::class, 'sign');
    $body = '{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}';
    $params = $sign->invoke($client, 'POST', '/apps/3/events', [], $body, 1353088179);
    same('ec365a775a4cd0599faeb73354201b6f', $params['body_md5'], 'body_md5');
    same('da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c', $params['auth_signature'], 'auth_signature');
    same(['auth_key', 'auth_timestamp', 'auth_version', 'body_md5', 'auth_signature'], array_keys($params), 'parameters');
    same('1.0', $params['auth_version'], 'auth_version');
    // The same signature as docs/examples/send_domain_events.py computes: values unescaped, sorted.
    $withQuery = $sign->invoke($client, 'GET', '/apps/3/audit', ['since' => '2026-11-27T11:00:00+01:00'], null, 1353088179);
    $expected = hash_hmac('sha256', "GET\n/apps/3/audit\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&since=2026-11-27T11:00:00+01:00", '7ad3773142a6692b25b8');
    same($expected, $withQuery['auth_signature'], 'signature over an unescaped query value');
    ok(!isset($withQuery['body_md5']), 'no body_md5 without a body');
};

$offline['fromLaravelConfig() reads broadcasting.connections.pusher'] = static function (): void {
    $client = Client::fromLaravelConfig([
        'driver' => 'pusher',
        'key' => 'app-key',
        'secret' => 'app-secret',
        'app_id' => 1000001,
        'options' => ['host' => 'herald.internal', 'port' => '6001', 'scheme' => 'http', 'useTLS' => false],
    ]);
    same('http://herald.internal:6001', $client->baseUrl(), 'base URL');
    same('1000001', $client->appId(), 'app id');
    $tls = Client::fromLaravelConfig(['key' => 'k', 'secret' => 's', 'app_id' => '1', 'options' => ['host' => 'herald.example.org', 'useTLS' => true]]);
    same('https://herald.example.org', $tls->baseUrl(), 'https from useTLS, no port');
    $error = throws(InvalidArgumentException::class, static fn () => Client::fromLaravelConfig(['key' => 'k', 'secret' => 's', 'app_id' => '1', 'options' => []]), 'no host');
    contains('PUSHER_HOST', $error->getMessage(), 'the message');
    $error = throws(InvalidArgumentException::class, static fn () => Client::fromLaravelConfig(['key' => 'k', 'secret' => '', 'app_id' => '1', 'options' => ['host' => 'h']]), 'no secret');
    contains('PUSHER_APP_SECRET', $error->getMessage(), 'the message');
};

$offline['refuses a base URL with a path, and arguments it could never send'] = static function (): void {
    throws(InvalidArgumentException::class, static fn () => new Client('http://herald.internal/prefix', '1', 'k', 's'), 'a path');
    throws(InvalidArgumentException::class, static fn () => new Client('herald.internal:6001', '1', 'k', 's'), 'no scheme');
    throws(InvalidArgumentException::class, static fn () => new Client('ftp://herald.internal', '1', 'k', 's'), 'ftp');
    throws(InvalidArgumentException::class, static fn () => new Client('http://h', '1', 'k', 's', 0.0), 'a zero timeout');
    same('http://[::1]:6001', (new Client('http://[::1]:6001/', '1', 'k', 's'))->baseUrl(), 'an IPv6 base URL');
    $client = new Client('http://127.0.0.1:1', '1', 'k', 's');
    throws(InvalidArgumentException::class, static fn () => $client->sendDomainEvents([]), 'an empty batch');
    throws(InvalidArgumentException::class, static fn () => $client->sendDomainEvents(['a' => securityAlert('x')]), 'a batch that is not a list');
    throws(InvalidArgumentException::class, static fn () => $client->sendDomainEvents([['x', 'y']]), 'an event that is a list');
    throws(InvalidArgumentException::class, static fn () => $client->sendDomainEvent(['id' => "\xff", 'type' => 't', 'data' => []]), 'invalid UTF-8');
    throws(InvalidArgumentException::class, static fn () => $client->trigger([], 'e', []), 'no channel');
    throws(InvalidArgumentException::class, static fn () => $client->trigger('news', 'e', [], 'not-a-socket'), 'a bad socket id');
    throws(InvalidArgumentException::class, static fn () => $client->get('/channels', ['auth_key' => 'x']), 'a reserved parameter');
    $dumped = print_r(new Client('http://127.0.0.1:1', '1', 'k', 'very-secret-value'), true);
    ok(!str_contains($dumped, 'very-secret-value') && str_contains($dumped, '***'), 'the secret is hidden from dumps: ' . $dumped);
};

$offline['server down: a clear, retryable NetworkException'] = static function (): void {
    $port = closedPort();
    $client = new Client("http://127.0.0.1:{$port}", HeraldServer::APP['id'], HeraldServer::APP['key'], HeraldServer::APP['secret'], 2.0);
    $error = throws(NetworkException::class, static fn () => $client->sendDomainEvent(securityAlert('alert-down')), 'connection refused');
    same(null, $error->getStatus(), 'status');
    ok($error->isRetryable(), 'a network failure is retryable');
    ok(!$error->isTimeout(), 'not a timeout');
    same(CURLE_COULDNT_CONNECT, $error->getCurlErrno(), 'curl errno');
    contains('Could not reach Herald', $error->getMessage(), 'message');
    contains("POST http://127.0.0.1:{$port}/apps/424242/domain-events", $error->getMessage(), 'message');
    ok($error instanceof HeraldException, 'a NetworkException is a HeraldException');
};

$offline['no answer in time: a retryable timeout'] = static function (): void {
    // A listening socket that never accepts: the connection completes, no answer ever comes.
    $socket = stream_socket_server('tcp://127.0.0.1:0');
    $address = stream_socket_get_name($socket, false);
    try {
        $client = new Client("http://{$address}", '424242', 'k', 's', 0.3);
        $started = microtime(true);
        $error = throws(NetworkException::class, static fn () => $client->sendDomainEvent(securityAlert('alert-slow')), 'a silent server');
        ok(microtime(true) - $started < 2.0, 'the timeout is honoured');
        ok($error->isTimeout(), 'isTimeout()');
        ok($error->isRetryable(), 'retryable');
        contains('did not answer', $error->getMessage(), 'message');
        contains('within 0.3 s', $error->getMessage(), 'message');
    } finally {
        fclose($socket);
    }
};

// -------------------------------------------------------------------------------------------------
// Tests against the server

$online['one event is accepted (202)'] = static function (HeraldServer $server): void {
    $client = $server->client();
    same(null, $client->lastStatus(), 'no status before the first request');
    $outcome = $client->sendDomainEvent(largeDonation('donation-9001-large'));
    same(202, $client->lastStatus(), 'HTTP status');
    same('donation-9001-large', $outcome->id, 'id');
    same('donation.large_received', $outcome->type, 'type');
    same(DomainEventOutcome::ACCEPTED, $outcome->status, 'status');
    ok($outcome->isAccepted() && !$outcome->isDuplicate() && !$outcome->isIgnored(), 'isAccepted()');
    same(1, $outcome->broadcastsQueued, 'broadcasts_queued');
    same([], $outcome->notificationIds, 'notification_ids');
    same(null, $outcome->reason, 'reason');
};

$online['several events in one call: one outcome per event, in order'] = static function (HeraldServer $server): void {
    $client = $server->client();
    $outcomes = $client->sendDomainEvents([
        securityAlert('alert-2'),
        [
            'id' => 'payment-p-7781-failed',
            'type' => 'payment.failed',
            'data' => ['payment_id' => 'p-7781', 'donation_id' => 9003, 'amount' => 25, 'currency' => 'USD', 'reason' => 'card declined', 'user_id' => 42, 'organization_id' => 7],
        ],
        [
            'id' => 'maintenance-2026-12-01',
            'type' => 'system.maintenance',
            'data' => ['maintenance_type' => 'scheduled', 'scheduled_for' => '2026-12-01T03:00:00+01:00', 'duration_minutes' => 30, 'affected_services' => ['api', 'dashboard']],
        ],
        [
            'id' => 'campaign-3-milestone-75',
            'type' => 'campaign.milestone_reached',
            'data' => ['campaign_id' => 3, 'campaign_title' => 'Clean water for Kisumu', 'organization_id' => 7, 'milestone' => 75, 'amount_raised' => '7500.00', 'goal_amount' => 10000, 'currency' => 'EUR'],
        ],
    ]);
    same(202, $client->lastStatus(), 'HTTP status');
    same(['alert-2', 'payment-p-7781-failed', 'maintenance-2026-12-01', 'campaign-3-milestone-75'], array_map(static fn ($o) => $o->id, $outcomes), 'ids in request order');
    same(['security.alert', 'payment.failed', 'system.maintenance', 'campaign.milestone_reached'], array_map(static fn ($o) => $o->type, $outcomes), 'types');
    same(['accepted', 'accepted', 'accepted', 'accepted'], statuses($outcomes), 'statuses');
    same(1, count($outcomes[1]->notificationIds), 'payment.failed stores one inbox notification');
    same([], $outcomes[0]->notificationIds, 'a security alert stores none');
};

$online['the same id again is a duplicate with the original outcome'] = static function (HeraldServer $server): void {
    $client = $server->client();
    $first = $client->sendDomainEvent(largeDonation('donation-9100-large'));
    same('accepted', $first->status, 'first send');
    $again = $client->sendDomainEvent(largeDonation('donation-9100-large'));
    same('duplicate', $again->status, 'second send');
    ok($again->isDuplicate(), 'isDuplicate()');
    same($first->broadcastsQueued, $again->broadcastsQueued, 'the original broadcasts_queued');
    same('donation.large_received', $again->type, 'type');
    // Twice in one batch, next to a new event.
    $outcomes = $client->sendDomainEvents([securityAlert('alert-twice'), securityAlert('alert-twice'), largeDonation('donation-9100-large')]);
    same(['accepted', 'duplicate', 'duplicate'], statuses($outcomes), 'statuses of a batch with repeats');
};

$online['a donation below the threshold is ignored, with the reason'] = static function (HeraldServer $server): void {
    $outcome = $server->client()->sendDomainEvent(largeDonation('donation-9002', 50));
    same('ignored', $outcome->status, 'status');
    ok($outcome->isIgnored(), 'isIgnored()');
    same(0, $outcome->broadcastsQueued, 'broadcasts_queued');
    same('amount 50 is below the large-donation threshold 1000', $outcome->reason, 'reason');
    // Ignored means stored and audited: sending it again is a duplicate of the ignored outcome.
    $again = $server->client()->sendDomainEvent(largeDonation('donation-9002', 50));
    same('duplicate', $again->status, 'resent');
    same($outcome->reason, $again->reason, 'the duplicate keeps the reason');
    $audit = $server->client()->audit(['event_id' => 'donation-9002', 'status' => 'ignored']);
    same(1, count($audit), 'one ignored audit entry');
    // An amount equal to the threshold is broadcast, and strings carry exact decimals.
    same('accepted', $server->client()->sendDomainEvent(largeDonation('donation-9003-large', '1000.00'))->status, 'at the threshold');
};

$online['422: the exception names the field, and nothing of the batch is stored'] = static function (HeraldServer $server): void {
    $client = $server->client();
    $error = throws(HeraldException::class, static fn () => $client->sendDomainEvents([securityAlert('alert-3'), securityAlert('alert-4', 'apocalyptic')]), 'a bad severity');
    ok(!$error instanceof NetworkException, 'not a network error');
    same(422, $error->getStatus(), 'status');
    same(422, $error->getCode(), 'getCode()');
    same(422, $client->lastStatus(), 'lastStatus()');
    same('events[1].data.severity', $error->getField(), 'field');
    same([['field' => 'events[1].data.severity', 'error' => 'events[1].data.severity: must be one of low, medium, high, critical']], $error->getErrors(), 'errors');
    ok(!$error->isRetryable(), 'a 422 is not retryable');
    contains('422', $error->getMessage(), 'message');
    contains('events[1].data.severity: must be one of low, medium, high, critical', $error->getMessage(), 'message');
    same('events[1].data.severity', $error->getBody()['field'] ?? null, 'the body is the error JSON');
    // All or nothing: the valid first event was not stored.
    same('accepted', $client->sendDomainEvent(securityAlert('alert-3'))->status, 'the valid event, sent alone');

    $error = throws(HeraldException::class, static fn () => $client->sendDomainEvent(['type' => 'payment.failed', 'data' => ['amount' => '-0', 'currency' => 'euro']]), 'a payment.failed with several faults');
    same('events[0].data.payment_id', $error->getField(), 'the first field');
    $fields = array_column($error->getErrors(), 'field');
    same(['events[0].data.payment_id', 'events[0].data.donation_id', 'events[0].data.amount', 'events[0].data.currency', 'events[0].data.reason', 'events[0].data.user_id', 'events[0].data.organization_id'], $fields, 'every field');
    contains('and 6 more', $error->getMessage(), 'the message counts the others');
};

$online['an empty PHP array is a JSON list: empty objects need (object) []'] = static function (HeraldServer $server): void {
    $alert = securityAlert('alert-details');
    $alert['data']['details'] = [];
    $error = throws(HeraldException::class, static fn () => $server->client()->sendDomainEvent($alert), 'details => []');
    same(422, $error->getStatus(), 'status');
    same('events[0].data.details', $error->getField(), 'field');
    $alert['data']['details'] = (object) [];
    same('accepted', $server->client()->sendDomainEvent($alert)->status, 'details => (object) []');
};

$online['a wrong secret is a 401'] = static function (HeraldServer $server): void {
    $client = $server->client(['id' => HeraldServer::APP['id'], 'key' => HeraldServer::APP['key'], 'secret' => 'not-the-secret']);
    $error = throws(HeraldException::class, static fn () => $client->sendDomainEvent(securityAlert('alert-401')), 'a wrong secret');
    same(401, $error->getStatus(), 'status');
    ok(!$error->isRetryable(), 'not retryable');
    contains('invalid signature', $error->getMessage(), 'message');
    same(null, $error->getField(), 'no field');
    $wrongKey = $server->client(['id' => HeraldServer::APP['id'], 'key' => 'other-key', 'secret' => HeraldServer::APP['secret']]);
    same(401, throws(HeraldException::class, static fn () => $wrongKey->sendDomainEvent(securityAlert('alert-401')), 'a wrong key')->getStatus(), 'status for a wrong key');
};

$online['an unknown app id is a 404'] = static function (HeraldServer $server): void {
    $client = $server->client(['id' => '999999', 'key' => HeraldServer::APP['key'], 'secret' => HeraldServer::APP['secret']]);
    $error = throws(HeraldException::class, static fn () => $client->sendDomainEvent(securityAlert('alert-404')), 'an unknown app');
    same(404, $error->getStatus(), 'status');
    ok(!$error->isRetryable(), 'not retryable');
    contains('999999', $error->getMessage(), 'message');
};

$online['another app is refused with 403 naming the notification app'] = static function (HeraldServer $server): void {
    $error = throws(HeraldException::class, static fn () => $server->client(HeraldServer::OTHER_APP)->sendDomainEvent(securityAlert('alert-403')), 'the other app');
    same(403, $error->getStatus(), 'status');
    contains('"424242"', $error->getMessage(), 'message names the notification app');
};

$online['a disabled app is refused with 403'] = static function (HeraldServer $server): void {
    $error = throws(HeraldException::class, static fn () => $server->client(HeraldServer::DISABLED_APP)->trigger('news', 'headline', []), 'a disabled app');
    same(403, $error->getStatus(), 'status');
    ok(!$error->isRetryable(), 'not retryable');
    contains('disabled', $error->getMessage(), 'message');
};

$online['429: over max_api_requests_per_second is retryable'] = static function (HeraldServer $server): void {
    $client = $server->client(HeraldServer::LIMITED_APP);
    $refused = null;
    for ($i = 0; $i < 5 && $refused === null; $i++) {
        try {
            $client->trigger('news', 'tick', ['i' => $i]);
        } catch (HeraldException $error) {
            $refused = $error;
        }
    }
    ok($refused !== null, 'five requests at once to an app allowing one per second: one is refused');
    same(429, $refused->getStatus(), 'status');
    ok($refused->isRetryable(), 'a 429 is retryable');
    ok(!$refused instanceof NetworkException, 'not a network error');
};

$online['413: a body over max_http_body_bytes'] = static function (HeraldServer $server): void {
    $event = securityAlert('alert-big');
    $event['data']['padding'] = str_repeat('x', 300 * 1024);
    $error = throws(HeraldException::class, static fn () => $server->client()->sendDomainEvent($event), 'a 300 KiB body');
    same(413, $error->getStatus(), 'status');
    ok(!$error->isRetryable(), 'not retryable');
};

$online['an accepted event is followed through the audit to delivered'] = static function (HeraldServer $server): void {
    $client = $server->client();
    same('accepted', $client->sendDomainEvent(largeDonation('donation-9200-large', '7500.50'))->status, 'accepted');
    $delivered = waitFor(static fn () => $client->audit(['event_id' => 'donation-9200-large', 'status' => 'delivered']), 'the delivered audit entry');
    same('donation.large_received', $delivered[0]['type'], 'type of the delivered entry');
    $entries = $client->audit(['event_id' => 'donation-9200-large']);
    $kinds = array_column($entries, 'status');
    foreach (['received', 'routed', 'delivered'] as $kind) {
        ok(in_array($kind, $kinds, true), "the trail has {$kind}: " . show($kinds));
    }
    $routed = array_values(array_filter($entries, static fn ($entry) => $entry['status'] === 'routed'))[0];
    same('donation.large', $routed['detail']['event'] ?? null, 'routed broadcast event');
    same(['admin-dashboard', 'organization.7', 'campaign.3'], $routed['detail']['channels'] ?? null, 'routed channels (logical names)');
    // Query values with characters that need escaping are signed unescaped.
    $since = (new DateTimeImmutable('-1 hour', new DateTimeZone('+01:00')))->format(DATE_RFC3339);
    ok(str_contains($since, '+01:00'), 'the since value has a +');
    ok(count($client->audit(['event_id' => 'donation-9200-large', 'since' => $since])) >= 3, 'audit with an RFC 3339 since');
};

$online['trigger() publishes on a channel (200), seen in the cache channel'] = static function (HeraldServer $server): void {
    $client = $server->client();
    same([], $client->trigger('cache-php-news', 'headline', ['title' => 'Hello', 'n' => 1]), 'the answer of a trigger');
    same(200, $client->lastStatus(), 'HTTP status');
    $info = $client->get('/channels/cache-php-news', ['info' => 'cache,subscription_count']);
    same('{"title":"Hello","n":1}', $info['cache']['data'] ?? null, 'the last event of the cache channel');
    same(false, $info['occupied'] ?? null, 'no subscriber');
    same(0, $info['subscription_count'] ?? null, 'subscription_count');
    // Several channels, a socket id left out, string data sent as it is.
    same([], $client->trigger(['cache-php-a', 'cache-php-b'], 'note', 'plain text', '123.456'), 'a trigger to two channels');
    foreach (['cache-php-a', 'cache-php-b'] as $channel) {
        same('plain text', $client->get("/channels/{$channel}", ['info' => 'cache'])['cache']['data'] ?? null, "the cache of {$channel}");
    }
    // Any app may trigger on its own channels.
    same([], $server->client(HeraldServer::OTHER_APP)->trigger('news', 'headline', ['x' => 1]), 'the other app triggers');
    same([], $client->get('/channels')['channels'] ?? null, 'no occupied channel');
};

$online['trigger() errors: a bad channel name is a 400 naming the field'] = static function (HeraldServer $server): void {
    $error = throws(HeraldException::class, static fn () => $server->client()->trigger('bad channel!', 'e', []), 'a bad channel name');
    same(400, $error->getStatus(), 'status');
    ok($error->getField() !== null, 'a field is named: ' . show($error->getBody()));
    ok(!$error->isRetryable(), 'not retryable');
};

$online['fromLaravelConfig() sends to the server'] = static function (HeraldServer $server): void {
    $client = Client::fromLaravelConfig([
        'driver' => 'pusher',
        'key' => HeraldServer::APP['key'],
        'secret' => HeraldServer::APP['secret'],
        'app_id' => HeraldServer::APP['id'],
        'options' => ['host' => '127.0.0.1', 'port' => (string) $server->port, 'scheme' => 'http', 'useTLS' => false],
    ]);
    same('accepted', $client->sendDomainEvent(securityAlert('alert-laravel'))->status, 'status');
};

$online['the server stopped: a NetworkException'] = static function (HeraldServer $server): void {
    $client = $server->client();
    same('accepted', $client->sendDomainEvent(securityAlert('alert-before-stop'))->status, 'while it runs');
    $server->stop();
    $error = throws(NetworkException::class, static fn () => $client->sendDomainEvent(securityAlert('alert-after-stop')), 'after the stop');
    ok($error->isRetryable(), 'retryable');
    same(null, $client->lastStatus(), 'no status without an answer');
    contains('Could not reach Herald', $error->getMessage(), 'message');
};

// -------------------------------------------------------------------------------------------------
// The runner

$filter = $argv[1] ?? '';
$started = microtime(true);
$passed = 0;
$failed = 0;

$run = static function (string $name, callable $test, array $args) use (&$passed, &$failed, $filter): void {
    if ($filter !== '' && stripos($name, $filter) === false) {
        return;
    }
    $begin = microtime(true);
    try {
        $test(...$args);
        $passed++;
        printf("ok - %s (%d ms)\n", $name, (microtime(true) - $begin) * 1000);
    } catch (Throwable $error) {
        $failed++;
        printf("not ok - %s\n    %s\n", $name, str_replace("\n", "\n    ", $error->getMessage()));
        if (!$error instanceof AssertionFailed) {
            printf("    (%s at %s:%d)\n", $error::class, $error->getFile(), $error->getLine());
        }
    }
};

foreach ($offline as $name => $test) {
    $run($name, $test, []);
}

$server = null;
$stopServer = static function () use (&$server): void {
    HeraldServer::abortStart();
    $server?->stop();
};
register_shutdown_function($stopServer);
if (function_exists('pcntl_async_signals')) {
    pcntl_async_signals(true);
    foreach ([SIGINT, SIGTERM] as $signal) {
        pcntl_signal($signal, static function (int $signal) use ($stopServer): void {
            $stopServer();
            exit(128 + $signal);
        });
    }
}

$wanted = array_filter(array_keys($online), static fn (string $name): bool => $filter === '' || stripos($name, $filter) !== false);
if ($wanted !== []) {
    try {
        $server = HeraldServer::start();
        printf("# herald %s on port %d\n", HeraldServer::binary(), $server->port);
    } catch (Throwable $error) {
        $failed++;
        printf("not ok - start herald\n    %s\n", str_replace("\n", "\n    ", $error->getMessage()));
        printf("# %d server tests not run\n", count($wanted));
    }
    if ($server !== null) {
        foreach ($online as $name => $test) {
            $run($name, $test, [$server]);
        }
        $logs = $server->logs();
        if ($failed > 0 || getenv('HERALD_DEBUG')) {
            echo $logs === '' ? "# herald wrote nothing to stderr\n" : $logs . "\n";
        }
        $server->stop();
    }
}

printf("# %.1f s\n", microtime(true) - $started);
printf("php: %d passed, %d failed\n", $passed, $failed);
exit($failed === 0 ? 0 : 1);
