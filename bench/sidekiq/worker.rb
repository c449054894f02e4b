# frozen_string_literal: true

# The seed's PygmentsWorker without Rails, for bench/sidekiq.py: each job POSTs lang and code
# as a form to HIGHLIGHTER_URL with Net::HTTP.post_form (a new connection each time, as the
# seed did). There is no database here, so a job does less than ours: no read, no write.
#
#   REDIS_URL=redis://127.0.0.1:PORT/0 HIGHLIGHTER_URL=http://127.0.0.1:PORT/ \
#     sidekiq -c 200 -r ./bench/sidekiq/worker.rb
#
# Once started, Sidekiq's two log lines per job ("start", "done") are turned off, as
# run_worker.py drops arq's; SIDEKIQ_JOB_LOG=1 keeps them.

require "net/http"
require "sidekiq"

# redis-rb 4.8 (Debian's, beside Sidekiq 6.4.1) warns on every BRPOP Sidekiq sends and every
# SADD of a push: writing those lines would be most of the CPU a job costs.
Redis.silence_deprecations = true

HIGHLIGHTER = URI(ENV.fetch("HIGHLIGHTER_URL", "http://127.0.0.1:8081/"))
CODE = "def f(n):\n    return [i * i for i in range(n)]  # snippet %d\n"

Sidekiq.configure_server do |config|
  config.on(:startup) do
    Sidekiq.logger.info("bench: ready, concurrency #{Sidekiq.options[:concurrency]}")
    Sidekiq.logger.level = Logger::WARN unless ENV["SIDEKIQ_JOB_LOG"] == "1"
  end
end

# The highlight job.
class PygmentsWorker
  include Sidekiq::Worker

  def perform(snippet_id)
    response = Net::HTTP.post_form(HIGHLIGHTER, lang: "python", code: format(CODE, snippet_id))
    raise "highlighter answered #{response.code}" unless response.is_a?(Net::HTTPOK)

    response.body
  end
end

# A job that does nothing, for the no-op drain.
class NoopWorker
  include Sidekiq::Worker

  def perform(_id); end
end
