<?php

declare(strict_types=1);

namespace Herald;

use RuntimeException;
use Throwable;

/**
 * Herald refused a request, or answered something this client cannot read.
 *
 * `getStatus()` is the HTTP status (also `getCode()`), `getBody()` the decoded JSON error body,
 * `getField()` the field a 400 or 422 names, `getErrors()` every fault of a 422 and
 * `isRetryable()` whether sending the same request again later can succeed (408, 429, 502, 503,
 * 504 and network failures: see {@see NetworkException}). Domain events are idempotent by their
 * `id`, so a retry with the same ids never stores or broadcasts an event twice.
 */
class HeraldException extends RuntimeException
{
    /**
     * @param array<string, mixed>|null $body the decoded JSON error body, when there was one
     */
    public function __construct(
        string $message,
        private readonly ?int $status = null,
        private readonly ?array $body = null,
        private readonly bool $retryable = false,
        private readonly ?int $retryAfter = null,
        ?Throwable $previous = null,
    ) {
        parent::__construct($message, $status ?? 0, $previous);
    }

    /** The HTTP status Herald answered with; null when no response arrived. */
    public function getStatus(): ?int
    {
        return $this->status;
    }

    /**
     * The decoded JSON error body (`['error' => '…', 'field' => '…', 'errors' => [...]]`), or null
     * when the response had no JSON object body.
     *
     * @return array<string, mixed>|null
     */
    public function getBody(): ?array
    {
        return $this->body;
    }

    /**
     * The field at fault: for a 422 the first of `getErrors()` (`events[0].data.amount`), for a 400
     * the parameter (`status`, `channels`, …); null otherwise.
     */
    public function getField(): ?string
    {
        $field = $this->body['field'] ?? null;

        return is_string($field) ? $field : null;
    }

    /**
     * Every fault of a 422, in request order: a list of `['field' => …, 'error' => …]`. Empty
     * for other errors.
     *
     * @return list<array{field: string, error: string}>
     */
    public function getErrors(): array
    {
        $errors = $this->body['errors'] ?? null;
        if (!is_array($errors)) {
            return [];
        }
        $list = [];
        foreach ($errors as $error) {
            if (is_array($error) && is_string($error['field'] ?? null) && is_string($error['error'] ?? null)) {
                $list[] = ['field' => $error['field'], 'error' => $error['error']];
            }
        }

        return $list;
    }

    /** Whether the same request may succeed later (send it again with the same event ids). */
    public function isRetryable(): bool
    {
        return $this->retryable;
    }

    /** Seconds to wait before retrying, when the response carried a `Retry-After` in seconds. */
    public function getRetryAfter(): ?int
    {
        return $this->retryAfter;
    }
}
