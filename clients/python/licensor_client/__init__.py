"""The client SDK: what the licensed software (or a SaaS backend) runs to talk to licensor."""
