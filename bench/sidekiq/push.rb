# frozen_string_literal: true

# Push COUNT jobs of CLASS (argument: 1..COUNT) with Sidekiq::Client.push_bulk, 1,000 a call:
#   REDIS_URL=redis://127.0.0.1:PORT/0 ruby bench/sidekiq/push.rb PygmentsWorker 5000

require "sidekiq"

# redis-rb 4.8 (Debian's, beside Sidekiq 6.4.1) warns on every BRPOP Sidekiq sends and every
# SADD of a push: writing those lines would be most of the CPU a job costs.
Redis.silence_deprecations = true

klass = ARGV.fetch(0)
count = Integer(ARGV.fetch(1))
pushed = 0
(1..count).each_slice(1_000) do |ids|
  pushed += Sidekiq::Client.push_bulk("class" => klass, "args" => ids.map { |id| [id] }).size
end
abort "pushed #{pushed} of #{count} jobs" unless pushed == count
puts "pushed #{pushed} #{klass} jobs"
