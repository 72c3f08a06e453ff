<?php

declare(strict_types=1);

namespace Herald;

use Throwable;

/**
 * No HTTP response arrived: Herald could not be reached (connection refused, DNS, TLS) or did not
 * answer within the client's timeout.
 *
 * Always retryable. After a timeout the request may nevertheless have been processed: domain
 * events sent again with the same ids are answered `duplicate`, so retrying them is safe; a plain
 * {@see Client::trigger()} retried after a timeout may be published twice.
 */
final class NetworkException extends HeraldException
{
    public function __construct(
        string $message,
        private readonly int $curlErrno = 0,
        ?Throwable $previous = null,
    ) {
        parent::__construct($message, null, null, true, null, $previous);
    }

    /** The curl error number (`CURLE_*`): 7 connection refused, 6 unknown host, 28 timeout, … */
    public function getCurlErrno(): int
    {
        return $this->curlErrno;
    }

    /** Whether the request timed out (it may have reached Herald: retry with the same ids). */
    public function isTimeout(): bool
    {
        return $this->curlErrno === CURLE_OPERATION_TIMEDOUT;
    }
}
