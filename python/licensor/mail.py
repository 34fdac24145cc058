"""Mail to end users (a license key bought in a shop, a portal sign-in link): one small interface, pluggable.

A plugin sends mail its own way by returning a :class:`MailSender` from ``licensor_mail_sender``; without one the
gateway writes each message as a file (``{data_dir}/mail/*.eml``, mode 0600) for a mail transfer agent or an
operator to pick up, or, with ``LICENSOR_MAIL=log``, only logs that a message was sent (never its text: it may
hold a license key or a sign-in link).
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from email.message import EmailMessage

from licensor.model import new_id

log = logging.getLogger("licensor.mail")


@dataclass(frozen=True)
class Mail:
    """A plain-text message to one recipient."""

    to: str
    subject: str
    text: str
    sender: str = "licensor@localhost"


class MailSender(ABC):
    """Delivers :class:`Mail`. ``send`` runs inside the transaction of the change it reports: an error aborts the
    change, so the shop's delivery is retried and nothing is lost (a message may then go out twice)."""

    @abstractmethod
    async def send(self, mail: Mail) -> None:
        """Hand the message on; raise if it cannot be."""


class FileMailSender(MailSender):
    """Writes each message as an RFC 5322 file of mode 0600 into ``directory`` (created 0700)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    async def send(self, mail: Mail) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = mail.sender, mail.to, mail.subject
        message.set_content(mail.text)
        path = os.path.join(self.directory, f"{new_id('msg')}.eml")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(message.as_bytes())


class LogMailSender(MailSender):
    """Logs the recipient and subject of each message, never its text."""

    async def send(self, mail: Mail) -> None:
        log.info("mail to %s: %s", mail.to, mail.subject)
